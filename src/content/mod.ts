/**
 * berth's content store: blobs addressed by digest under
 * `<root>/io.containerd.content.v1.content/blobs/<alg>/<hex>`, written
 * through resumable ingests under `ingest/<sha256 of ref>/`. As in
 * containerd, this store keeps only bytes; which namespace owns a blob and
 * its labels are kept by the metadata store (src/metadata).
 *
 * @example
 * ```ts
 * import { ContentStore } from "./mod.ts";
 * const store = await ContentStore.open("/var/lib/berth/io.containerd.content.v1.content");
 * const w = await store.writer("pull-layer-1", { expectedSize: 5 });
 * await w.write(new TextEncoder().encode("hello"));
 * const digest = await w.commit(5);
 * const stream = await store.read(digest);
 * ```
 * @module
 */

export {
  type ContentInfo,
  type ContentReaderAt,
  ContentStore,
  ContentWriter,
  type IngestStatus,
  isLocked,
  type WriterOptions,
} from "./store.ts";
export {
  CANONICAL_ALGORITHM,
  Digester,
  DigestingStream,
  digestOf,
  isDigest,
  type ParsedDigest,
  parseDigest,
} from "./digest.ts";

export const CONTENT_PLUGIN_DIR = "io.containerd.content.v1.content";
