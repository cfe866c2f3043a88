/**
 * Unpacking an image into snapshots: one committed snapshot per layer,
 * named by the layer's chain id, so images sharing lower layers share
 * their snapshots and a repeated unpack finds everything done.
 *
 * @module
 */

import { Code, failedPrecondition, invalidArgument, isCode } from "../errdefs/mod.ts";
import { LABEL_UNCOMPRESSED } from "../labels/mod.ts";
import type { Descriptor, ImageBackend } from "./backend.ts";
import { readJson, resolveManifest } from "./blobs.ts";
import { snapshotLabel } from "./gclabels.ts";
import { chainIds, type Platform } from "../platforms/mod.ts";

/** Options of {@link unpackImage}. */
export interface UnpackOptions {
  /** Snapshotter name (default overlayfs). */
  snapshotter?: string;
  platform?: Platform;
  /**
   * Resolves once blob `digest` is in the content store (a pull still
   * fetching it): the config and each layer are awaited before use, so
   * layers unpack in order while later ones download.
   */
  ready?: (digest: string) => Promise<void>;
}

/** What {@link unpackImage} did. */
export interface UnpackResult {
  /** Chain id of the top layer: the parent of a container's root file system. */
  chainId: string;
  /** Layers the image has. */
  layers: number;
  /** Layers applied now (the others were unpacked already). */
  applied: number;
}

/** The image config's diff ids. */
export async function diffIdsOf(b: ImageBackend, config: Descriptor): Promise<string[]> {
  const cfg = await readJson<{ rootfs?: { type?: string; diff_ids?: string[] } }>(
    b.content,
    config.digest,
  );
  const ids = cfg.rootfs?.diff_ids;
  if (!Array.isArray(ids)) throw invalidArgument(`config ${config.digest} has no rootfs.diff_ids`);
  return ids;
}

/**
 * Unpacks `target` (a manifest, or an index resolved for the platform)
 * into snapshots. Each missing layer is prepared under a unique key,
 * applied through the backend's differ, checked against the config's diff
 * id, and committed under its chain id; a chain id someone else committed
 * meanwhile is taken as done. The config is labelled so the chain stays
 * as long as the image does. Run it under a lease ({@link ImageBackend.withLease}).
 */
export async function unpackImage(
  b: ImageBackend,
  target: Descriptor,
  opts: UnpackOptions = {},
): Promise<UnpackResult> {
  const { manifest } = await resolveManifest(b.content, target, opts.platform);
  await opts.ready?.(manifest.config.digest);
  const diffIds = await diffIdsOf(b, manifest.config);
  if (diffIds.length !== manifest.layers.length) {
    throw invalidArgument(
      `manifest has ${manifest.layers.length} layers but its config ${diffIds.length} diff ids`,
    );
  }
  const sn = b.snapshots(opts.snapshotter);
  const chain = await chainIds(diffIds);
  let parent = "";
  let applied = 0;
  for (let i = 0; i < chain.length; i++) {
    const chainId = chain[i];
    if (!await sn.exists(chainId)) {
      await opts.ready?.(manifest.layers[i].digest);
      const key = `extract-${crypto.randomUUID()} ${chainId}`;
      const mounts = await sn.prepare(key, parent, { "containerd.io/snapshot.ref": chainId });
      try {
        const layer = manifest.layers[i];
        const got = await b.differ.apply(layer, mounts);
        if (got.digest !== diffIds[i]) {
          throw failedPrecondition(
            `layer ${layer.digest} unpacked to diff id ${got.digest}, config says ${diffIds[i]}`,
          );
        }
        await b.content.setLabels(layer.digest, { [LABEL_UNCOMPRESSED]: diffIds[i] });
        try {
          await sn.commit(chainId, key);
          applied++;
        } catch (err) {
          if (!isCode(err, Code.AlreadyExists)) throw err;
          await sn.remove(key); // a concurrent unpack committed the same layer first
        }
      } catch (err) {
        await sn.remove(key).catch(() => {});
        throw err;
      }
    }
    parent = chainId;
  }
  if (parent) {
    await b.content.setLabels(manifest.config.digest, { [snapshotLabel(sn.name)]: parent });
  }
  return { chainId: parent, layers: chain.length, applied };
}
