/**
 * The step of a manifest walk both the daemon (import, pull, unpack, export)
 * and the client (image size, check, config) take: from an index's entries,
 * the manifests for a platform.
 *
 * @module
 */

import { isIndex, isManifest } from "./mediatypes.ts";
import { DEFAULT_PLATFORM, matchPlatform, type Platform } from "./platform.ts";

/** An index entry, as JSON indexes carry it. */
export interface IndexEntry {
  mediaType: string;
  digest: string;
  platform?: Partial<Platform>;
}

/**
 * The entries of an index that serve `platform`, in the index's order:
 * manifests (and nested indexes) whose platform matches.
 */
export function manifestsFor<E extends IndexEntry>(
  entries: readonly E[],
  platform: Platform = DEFAULT_PLATFORM,
): E[] {
  return entries.filter((e) =>
    (isManifest(e.mediaType) || isIndex(e.mediaType) || e.mediaType === "") &&
    matchPlatform(e.platform, platform)
  );
}
