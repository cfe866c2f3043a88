/**
 * Writing and reading blobs for image operations: verified writes that
 * leave nothing behind on failure, small JSON documents, and the
 * children of manifests and indexes.
 *
 * @module
 */

import { Code, failedPrecondition, invalidArgument, isCode, notFound } from "../errdefs/mod.ts";
import { digestOf, isLocked } from "../content/mod.ts";
import type { BlobWriter, ContentAccess, Descriptor } from "./backend.ts";
import { DEFAULT_PLATFORM, formatPlatform, manifestsFor, type Platform } from "../platforms/mod.ts";
import { isIndex, isManifest, sniffMediaType } from "../platforms/mod.ts";

/** The largest JSON document (index, manifest, config) berth reads into memory. */
export const MAX_JSON_SIZE = 8 << 20;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Opens ingest `ref`, waiting while another writer holds it (a concurrent
 * import or pull of the same blob). Returns undefined when `expected` is
 * already in the store: nothing needs writing.
 */
export async function openWriter(
  content: ContentAccess,
  ref: string,
  opts: { total?: number; expected?: string } = {},
): Promise<BlobWriter | undefined> {
  for (let delay = 20;; delay = Math.min(delay * 2, 500)) {
    try {
      return await content.writer(ref, opts);
    } catch (err) {
      if (isCode(err, Code.AlreadyExists)) return undefined;
      if (!isLocked(err)) throw err;
    }
    await sleep(delay);
  }
}

/** Bytes per write when streaming into a writer: a remote writer pays a round trip per write. */
export const WRITE_CHUNK = 1 << 20;

/**
 * Regroups `data` into chunks of `size` bytes (the last may be shorter):
 * file, tar and HTTP streams yield 16-64 KiB pieces, and every write costs
 * a call. Chunks already that large pass through uncopied. When `data`
 * fails, what was gathered is yielded before the error is thrown, so a
 * resumable download keeps every byte it received.
 */
export async function* coalesce(
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  size: number,
): AsyncGenerator<Uint8Array> {
  let buf: Uint8Array | undefined;
  let n = 0;
  try {
    for await (const chunk of data) {
      if (n === 0 && chunk.length >= size) {
        yield chunk;
        continue;
      }
      let off = 0;
      while (off < chunk.length) {
        buf ??= new Uint8Array(size);
        const take = Math.min(size - n, chunk.length - off);
        buf.set(chunk.subarray(off, off + take), n);
        n += take;
        off += take;
        if (n === size) {
          const full = buf;
          buf = undefined; // the writer may keep it (queued requests), so never reuse it
          n = 0;
          yield full;
        }
      }
    }
  } catch (err) {
    if (n > 0) yield buf!.subarray(0, n);
    throw err;
  }
  if (n > 0) yield buf!.subarray(0, n);
}

/**
 * Writes `data` (appended after the writer's offset) and commits it
 * against `size`/`expected`. A mismatch aborts the ingest, so nothing of a
 * bad blob stays, and throws FailedPrecondition naming `what`.
 */
export async function finishBlob(
  content: ContentAccess,
  w: BlobWriter,
  ref: string,
  data: AsyncIterable<Uint8Array> | Iterable<Uint8Array> | undefined,
  opts: { size?: number; expected?: string; labels?: Record<string, string>; what?: string },
): Promise<string> {
  try {
    if (data) { for await (const chunk of coalesce(data, WRITE_CHUNK)) await w.write(chunk); }
    return await w.commit(opts.size ?? 0, opts.expected, opts.labels);
  } catch (err) {
    await w.close().catch(() => {});
    await content.abort(ref).catch(() => {});
    if (isCode(err, Code.FailedPrecondition)) {
      throw failedPrecondition(`${opts.what ?? "blob"}: ${(err as Error).message}`);
    }
    throw err;
  }
}

/** Writes a whole small blob (JSON documents) and returns its descriptor. */
export async function putBytes(
  content: ContentAccess,
  bytes: Uint8Array,
  mediaType: string,
  labels?: Record<string, string>,
): Promise<Descriptor> {
  const digest = digestOf(bytes);
  const desc = { mediaType, digest, size: bytes.length };
  const ref = `put-${digest}`;
  const w = await openWriter(content, ref, { total: bytes.length, expected: digest });
  if (!w) {
    if (labels) await content.setLabels(digest, labels);
    return desc;
  }
  await w.truncate();
  await finishBlob(content, w, ref, [bytes], { size: bytes.length, expected: digest, labels });
  return desc;
}

/** Reads blob `digest` whole (at most {@link MAX_JSON_SIZE} bytes). */
export async function readBytes(content: ContentAccess, digest: string): Promise<Uint8Array> {
  const info = await content.info(digest);
  if (info.size > MAX_JSON_SIZE) {
    throw invalidArgument(`${digest} is ${info.size} bytes, too large for a JSON document`);
  }
  const out = new Uint8Array(info.size);
  let n = 0;
  for await (const chunk of await content.read(digest)) {
    out.set(chunk.subarray(0, out.length - n), n);
    n += chunk.length;
  }
  return out;
}

/** Parses blob `digest` as JSON. */
export async function readJson<T = Record<string, unknown>>(
  content: ContentAccess,
  digest: string,
): Promise<T> {
  try {
    return JSON.parse(new TextDecoder().decode(await readBytes(content, digest))) as T;
  } catch (err) {
    if (err instanceof SyntaxError) throw invalidArgument(`${digest}: not JSON: ${err.message}`);
    throw err;
  }
}

/** An OCI descriptor as JSON documents hold it. */
export interface JsonDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
  platform?: Platform;
}

/** An index as JSON. */
export interface IndexJson {
  schemaVersion?: number;
  mediaType?: string;
  manifests: JsonDescriptor[];
  annotations?: Record<string, string>;
}

/** A manifest as JSON. */
export interface ManifestJson {
  schemaVersion?: number;
  mediaType?: string;
  config: JsonDescriptor;
  layers: JsonDescriptor[];
  annotations?: Record<string, string>;
}

/** The checked media type of the document `desc` points at, read from `doc` when `desc` has none. */
function mediaTypeOf(desc: Descriptor, doc: Record<string, unknown>): string {
  return desc.mediaType || sniffMediaType(doc);
}

/**
 * Follows `desc` down to the manifest for `platform`: an index is read and
 * its first matching entry followed. Returns the manifest's descriptor and
 * parsed document; NotFound when no entry matches.
 */
export async function resolveManifest(
  content: ContentAccess,
  desc: Descriptor,
  platform?: Platform,
): Promise<{ desc: Descriptor; manifest: ManifestJson }> {
  for (let depth = 0; depth < 8; depth++) {
    const doc = await readJson(content, desc.digest);
    const mt = mediaTypeOf(desc, doc);
    if (isManifest(mt)) {
      const manifest = doc as unknown as ManifestJson;
      if (!manifest.config || !Array.isArray(manifest.layers)) {
        throw invalidArgument(`manifest ${desc.digest} lacks config or layers`);
      }
      return { desc: { ...desc, mediaType: mt }, manifest };
    }
    if (!isIndex(mt)) throw invalidArgument(`${desc.digest}: unsupported media type ${mt}`);
    const child = await pickManifest(
      content,
      (doc as unknown as IndexJson).manifests ?? [],
      platform,
    );
    if (!child) {
      throw notFound(
        `manifest for ${formatPlatform(platform ?? DEFAULT_PLATFORM)} in index ${desc.digest}`,
      );
    }
    desc = child;
  }
  throw invalidArgument(`indexes nested too deeply under ${desc.digest}`);
}

/**
 * The entry of `entries` for `platform`: the first whose platform matches,
 * preferring ones whose blob is present (archives may carry one platform
 * of a multi-platform index).
 */
export async function pickManifest(
  content: ContentAccess | undefined,
  entries: JsonDescriptor[],
  platform?: Platform,
): Promise<JsonDescriptor | undefined> {
  const candidates = manifestsFor(entries, platform);
  if (!content) return candidates[0];
  for (const c of candidates) {
    try {
      await content.info(c.digest);
      return c;
    } catch (err) {
      if (!isCode(err, Code.NotFound)) throw err;
    }
  }
  return candidates[0];
}

/** A stored descriptor from a JSON one (drops `platform`). */
export function toDescriptor(d: JsonDescriptor): Descriptor {
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: d.size,
    ...(d.annotations ? { annotations: d.annotations } : {}),
  };
}
