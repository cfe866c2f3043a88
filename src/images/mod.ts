/**
 * Images: import (OCI layout and `docker save` archives, plain
 * directories), export, pull from registries, and unpack into snapshots.
 *
 * Where this runs: every operation is a function over an
 * {@link ImageBackend}, a handful of small interfaces (content writer and
 * reader, image records, snapshotter, layer differ, lease). As with
 * containerd's ctr, the heavy lifting can run in the CLIENT, talking to the
 * daemon's Content, Images, Snapshots, Diff and Leases services; or in the
 * daemon (and in tests) over the local stores with {@link localBackend}.
 * The code is the same either way: only the backend differs. berth's
 * client is TypeScript too, so a service-client backend is a thin adapter
 * of these interfaces (src/client/backend.ts), and import/pull stream
 * straight from the client into the daemon's content store, with layers
 * applied through the Diff service's logic onto the mounts the daemon's
 * snapshotter returns. The decision: these operations run client-side, as
 * ctr's do; the daemon needs no image-transfer RPC of its own.
 *
 * Everything streams: archives are read once, layers are never held in
 * memory, blobs are digest-verified before they are committed, and each
 * operation runs under a lease so a concurrent garbage collection cannot
 * take what is half done. Image records end up with containerd's
 * `containerd.io/gc.ref.*` labels on their index, manifest and config.
 *
 * @example
 * ```ts
 * import { importArchive, localBackend } from "./mod.ts";
 * const b = localBackend({ content, md, snapshotters: { overlayfs: md.snapshotter(overlay) } }, "default");
 * const file = await Deno.open("busybox.tar");
 * const { images } = await importArchive(b, file.readable);
 * ```
 * @module
 */

export type {
  BlobWriter,
  ContentAccess,
  Descriptor,
  Image,
  ImageBackend,
  ImageRecords,
  LayerDiffer,
  LayerSnapshots,
  Mount,
} from "./backend.ts";
export { localBackend, localContent, type LocalStores } from "./local.ts";
export { applyToMounts, diffMounts, localDiffer, writableDir, writeLayer } from "./differ.ts";
export {
  ANNOTATION_IMAGE_NAME,
  ANNOTATION_REF_NAME,
  entryName,
  importArchive,
  type ImportOptions,
  type ImportProgress,
  type ImportResult,
} from "./import.ts";
export { exportArchive, type ExportOptions } from "./export.ts";
export { type FromDirOptions, importDirectory } from "./fromdir.ts";
export { unpackImage, type UnpackOptions, type UnpackResult } from "./unpack.ts";
export { labelChildren, snapshotLabel } from "./gclabels.ts";
export { readJson, resolveManifest } from "./blobs.ts";
export {
  familiarName,
  formatReference,
  normalizeName,
  parseReference,
  type Reference,
} from "./reference.ts";
export { pullImage, type PullOptions, type PullProgress, type PullResult } from "./pull.ts";
export {
  type Challenge,
  parseChallenges,
  RegistryClient,
  type RegistryOptions,
} from "./registry.ts";
