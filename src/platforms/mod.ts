/**
 * The image-format vocabulary the daemon and the client share, with no
 * dependencies (the client loads it at start): OCI platforms (default: the
 * host's, as containerd's platforms.Default), the OCI and Docker media
 * types, the choice of an index's manifests for a platform, and chain ids.
 *
 * @example
 * ```ts
 * const [m] = manifestsFor(index.manifests, DEFAULT_PLATFORM);
 * const rootfs = await chainId(config.rootfs.diff_ids);
 * ```
 * @module
 */

export { chainId, chainIds } from "./chain.ts";
export * from "./mediatypes.ts";
export {
  DEFAULT_PLATFORM,
  formatPlatform,
  hostPlatform,
  matchPlatform,
  parsePlatform,
  type Platform,
} from "./platform.ts";
export { type IndexEntry, manifestsFor } from "./walk.ts";
