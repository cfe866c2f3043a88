/**
 * Layers as tar streams: {@link applyLayer} unpacks one into a directory
 * (containerd's archive.Apply), {@link diffTar} produces one from the
 * changes between two directories or from an overlay upper directory.
 * OCI whiteouts (`.wh.<name>`, `.wh..wh..opq`) become overlayfs whiteouts
 * for overlay snapshots, or real deletions for native ones, and back.
 * Everything streams; no layer is held in memory.
 *
 * @example
 * ```ts
 * import { applyLayer, diffTar } from "./mod.ts";
 * const blob = await Deno.open("layer.tar.gz");
 * const { digest } = await applyLayer(upperDir, blob.readable, { whiteouts: "overlay" });
 * const tar = diffTar({ upper: upperDir }).pipeThrough(new CompressionStream("gzip"));
 * ```
 * @module
 */

export {
  applyLayer,
  type ApplyOptions,
  type ApplyResult,
  OVERLAY_OPAQUE_XATTR,
  WHITEOUT_OPAQUE,
  WHITEOUT_PREFIX,
} from "./apply.ts";
export { type DiffOptions, diffTar } from "./diff.ts";
export { type Compression, decompress, detectCompression } from "./compression.ts";
export { cleanEntryPath, resolveInRoot } from "./path.ts";
export { packTar, readTar, type TarEntry, type TarHeader, type TarOut } from "./tar.ts";
