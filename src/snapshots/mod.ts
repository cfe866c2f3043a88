/**
 * Snapshotters: where container root file systems are built, layer by
 * layer, with containerd's Snapshots semantics (prepare, view, commit,
 * remove, stat, update, usage, walk, mounts). Two are built in:
 * `overlayfs` (the default) and `native` (plain copies). Each keeps its
 * metadata in SQLite at `<state>/io.containerd.snapshotter.v1.<name>/metadata.db`
 * and returns mounts for the caller to perform; none keeps anything mounted.
 *
 * Keys here are the snapshotter's own; per-namespace names are mapped onto
 * them by the metadata store (src/metadata), as containerd does.
 *
 * @example
 * ```ts
 * import { openSnapshotter } from "./mod.ts";
 * const sn = await openSnapshotter("overlayfs", "/var/lib/berth");
 * await sn.prepare("extract-1", "");
 * // ... apply a layer into the upper dir, then:
 * await sn.commit("layer-1", "extract-1");
 * const mounts = await sn.prepare("ctr-rootfs", "layer-1");
 * ```
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import { NativeSnapshotter } from "./native.ts";
import { OverlaySnapshotter } from "./overlay.ts";
import type { Snapshotter } from "./types.ts";

export type { Kind, Mount, SnapshotInfo, SnapshotOptions, Snapshotter, Usage } from "./types.ts";
export { NativeSnapshotter } from "./native.ts";
export { OverlaySnapshotter } from "./overlay.ts";
export { adaptSnapshot } from "./local.ts";
export { diskUsage } from "./usage.ts";

export { DEFAULT_SNAPSHOTTER } from "../defaults/mod.ts";

/** Names of the built-in snapshotters. */
export const SNAPSHOTTER_NAMES: readonly string[] = ["overlayfs", "native"];

/** `<stateRoot>/io.containerd.snapshotter.v1.<name>`, where snapshotter `name` keeps everything. */
export function snapshotterRoot(stateRoot: string, name: string): string {
  return `${stateRoot}/io.containerd.snapshotter.v1.${name}`;
}

/** Opens built-in snapshotter `name` under berth's state root. */
export async function openSnapshotter(name: string, stateRoot: string): Promise<Snapshotter> {
  const root = snapshotterRoot(stateRoot, name);
  switch (name) {
    case "overlayfs":
      return await OverlaySnapshotter.open(root);
    case "native":
      return await NativeSnapshotter.open(root);
  }
  throw invalidArgument(
    `unknown snapshotter ${JSON.stringify(name)} (known: ${SNAPSHOTTER_NAMES.join(", ")})`,
  );
}
