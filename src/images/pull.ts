// Pulling an image from a registry into the content store: resolve the
// reference, follow an index to the platform's manifest, fetch config and
// layers concurrently (resuming interrupted ingests with Range requests),
// label, unpack, and record the image; all under one lease.

import { Code, failedPrecondition, invalidArgument, isCode, unavailable } from "../errdefs/mod.ts";
import type { ContentAccess, Descriptor, Image, ImageBackend } from "./backend.ts";
import {
  coalesce,
  finishBlob,
  type IndexJson,
  type JsonDescriptor,
  type ManifestJson,
  openWriter,
  pickManifest,
  putBytes,
  toDescriptor,
  WRITE_CHUNK,
} from "./blobs.ts";
import { labelChildren } from "./gclabels.ts";
import { isIndex, isManifest } from "./mediatypes.ts";
import type { Platform } from "./platform.ts";
import { formatReference, parseReference, type Reference } from "./reference.ts";
import { log } from "../log/mod.ts";
import { RegistryClient, type RegistryOptions } from "./registry.ts";
import { unpackImage, type UnpackResult } from "./unpack.ts";

/** One step of a pull, as reported to {@link PullOptions.onProgress}. */
export interface PullProgress {
  /** The blob (or the reference while resolving). */
  digest: string;
  mediaType: string;
  /** resolved: the reference's target is known; exists: already in the store. */
  status: "resolved" | "exists" | "downloading" | "done" | "unpacking" | "unpacked";
  /** Bytes in the store so far, and the blob's size. */
  offset: number;
  total: number;
  /** Where this download started (> 0 when an earlier ingest was resumed). */
  resumedAt?: number;
}

/** Options of {@link pullImage}. */
export interface PullOptions extends RegistryOptions {
  platform?: Platform;
  /** Unpack into snapshots (default true). */
  unpack?: boolean;
  snapshotter?: string;
  /** Blobs fetched at once (default 3). */
  concurrency?: number;
  /** Called for every step; keep it quick (it runs inside the download loop). */
  onProgress?: (p: PullProgress) => void;
  /**
   * Where to try resolving the reference, in order (mirrors, then the host
   * itself); each entry's settings override the ones above. The first
   * endpoint that has the manifest serves the whole pull. None: the
   * reference's own host.
   */
  endpoints?: RegistryOptions[];
  /** Labels of the image record. */
  labels?: Record<string, string>;
}

/** What {@link pullImage} did. */
export interface PullResult {
  image: Image;
  /** Blobs fetched now, and found in the store already. */
  fetched: number;
  existing: number;
  unpacked?: UnpackResult;
}

// Progress is reported at most this often per blob while downloading.
const PROGRESS_EVERY = 1 << 20;

/** Attempts per blob: a dropped connection is resumed from the bytes already written. */
const FETCH_ATTEMPTS = 3;

// Errors a new attempt cannot fix: the registry said no, or the bytes are wrong.
function final(err: unknown): boolean {
  return [Code.NotFound, Code.PermissionDenied, Code.FailedPrecondition, Code.InvalidArgument]
    .some((c) => isCode(err, c));
}

async function fetchBlob(
  content: ContentAccess,
  reg: RegistryClient,
  desc: JsonDescriptor,
  report: (p: PullProgress) => void,
): Promise<boolean> {
  const ref = `pull-${desc.digest}`;
  const w = await openWriter(content, ref, { total: desc.size, expected: desc.digest });
  const base = { digest: desc.digest, mediaType: desc.mediaType, total: desc.size };
  if (!w) {
    report({ ...base, status: "exists", offset: desc.size });
    return false;
  }
  const what = `blob ${desc.digest} from ${reg.ref.host}`;
  for (let attempt = 1;; attempt++) {
    try {
      // Bytes from an earlier pull or attempt are kept: ask only for the rest.
      const from = w.offset > 0 && w.offset < desc.size ? w.offset : 0;
      if (from === 0 && w.offset > 0) await w.truncate();
      const res = await reg.blob(desc.digest, from);
      if (from > 0 && res.status !== 206) await w.truncate(); // the registry sent it whole
      report({ ...base, status: "downloading", offset: w.offset, resumedAt: w.offset });
      let lastReport = w.offset;
      for await (const chunk of coalesce(res.body ?? [], WRITE_CHUNK)) {
        if (w.offset + chunk.length > desc.size) {
          await res.body?.cancel().catch(() => {});
          throw failedPrecondition(`${what}: more than the ${desc.size} bytes its descriptor says`);
        }
        await w.write(chunk);
        if (w.offset - lastReport >= PROGRESS_EVERY) {
          lastReport = w.offset;
          report({ ...base, status: "downloading", offset: lastReport });
        }
      }
      if (w.offset === desc.size) break;
      throw unavailable(`${what}: connection ended at byte ${w.offset} of ${desc.size}`);
    } catch (err) {
      if (attempt >= FETCH_ATTEMPTS || final(err)) {
        if (isCode(err, Code.FailedPrecondition)) {
          await w.close().catch(() => {});
          await content.abort(ref).catch(() => {});
        } else {
          await w.close().catch(() => {}); // the bytes stay for the next pull to resume
        }
        throw err;
      }
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
  await finishBlob(content, w, ref, undefined, { size: desc.size, expected: desc.digest, what });
  report({ ...base, status: "done", offset: desc.size });
  return true;
}

/** A promise with its settle functions; settling twice does nothing, and nobody waiting is no error. */
function deferred(): { promise: Promise<void>; resolve(): void; reject(err: unknown): void } {
  let resolve!: () => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<void>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  promise.catch(() => {});
  return { promise, resolve, reject };
}

/** Runs `tasks` with at most `limit` at a time; the first failure is thrown after all settle. */
async function pool<T>(items: T[], limit: number, fn: (t: T) => Promise<void>): Promise<void> {
  let next = 0;
  const errors: unknown[] = [];
  const worker = async () => {
    while (next < items.length) {
      const item = items[next++];
      try {
        await fn(item);
      } catch (err) {
        errors.push(err);
        next = items.length; // start nothing new
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(limit, items.length)) }, worker));
  if (errors.length > 0) throw errors[0];
}

/**
 * The reference's manifest from the first of `opts.endpoints` that has it,
 * with the client that got it. When none has it: the first error that is
 * not NotFound (an endpoint down, refusing credentials), else NotFound.
 */
async function resolveFirst(
  r: Reference,
  opts: PullOptions,
): Promise<{ reg: RegistryClient; top: { desc: Descriptor; bytes: Uint8Array } }> {
  const { endpoints = [{}], ...base } = opts;
  let firstErr: unknown;
  let notFoundErr: unknown;
  for (const e of endpoints) {
    const reg = new RegistryClient(r, { ...base, ...e });
    try {
      return { reg, top: await reg.manifest(r.digest ?? r.tag!) };
    } catch (err) {
      if (endpoints.length === 1) throw err;
      log.debug("registry endpoint failed, trying the next", {
        endpoint: reg.base,
        error: (err as Error).message,
      });
      if (isCode(err, Code.NotFound)) notFoundErr ??= err;
      else firstErr ??= err;
    }
  }
  throw firstErr ?? notFoundErr;
}

/**
 * Pulls `ref` ("host/repo:tag" or "@digest"; docker.io names are
 * normalized) into `backend` and records it as an image named by the full
 * reference. Manifests are verified by digest, blobs as they are committed;
 * a blob whose bytes do not match fails the pull and leaves nothing of it.
 */
export function pullImage(
  backend: ImageBackend,
  ref: string,
  opts: PullOptions = {},
): Promise<PullResult> {
  const r = parseReference(ref);
  const name = formatReference(r);
  const report = opts.onProgress ?? (() => {});
  return backend.withLease(async (b) => {
    let fetched = 0;
    let existing = 0;
    const { reg, top } = await resolveFirst(r, opts);
    report({ ...top.desc, status: "resolved", offset: 0, total: top.desc.size });
    await putBytes(b.content, top.bytes, top.desc.mediaType);
    let manifestDesc: Descriptor = top.desc;
    let manifestBytes = top.bytes;
    if (isIndex(top.desc.mediaType)) {
      const index = JSON.parse(new TextDecoder().decode(top.bytes)) as IndexJson;
      const child = await pickManifest(undefined, index.manifests ?? [], opts.platform);
      if (!child) throw invalidArgument(`${name} has no manifest for the platform`);
      const m = await reg.manifest(child.digest);
      manifestDesc = { ...toDescriptor(child), mediaType: child.mediaType || m.desc.mediaType };
      manifestBytes = m.bytes;
      await putBytes(b.content, m.bytes, manifestDesc.mediaType);
    }
    if (!isManifest(manifestDesc.mediaType)) {
      throw invalidArgument(`${name}: unsupported manifest type ${manifestDesc.mediaType}`);
    }
    const manifest = JSON.parse(new TextDecoder().decode(manifestBytes)) as ManifestJson;
    if (!manifest.config || !Array.isArray(manifest.layers)) {
      throw invalidArgument(`${name}: manifest lacks config or layers`);
    }
    // In manifest order (config first), so that unpacking, which goes
    // layer by layer from the bottom, can start while later layers download.
    const blobs = [manifest.config, ...manifest.layers];
    const unique = [...new Map(blobs.map((d) => [d.digest, d])).values()];
    const fetchedBlobs = new Map(unique.map((d) => [d.digest, deferred()]));
    const fetching = pool(unique, opts.concurrency ?? 3, async (d) => {
      if (await fetchBlob(b.content, reg, d, report)) fetched++;
      else existing++;
      fetchedBlobs.get(d.digest)!.resolve();
    }).finally(() => {
      // A failed pull starts nothing new: whatever waits on a blob not fetched stops too.
      for (const f of fetchedBlobs.values()) f.reject(unavailable("pull stopped before this blob"));
    });
    let unpacked: UnpackResult | undefined;
    const unpacking = opts.unpack === false ? Promise.resolve() : (async () => {
      report({ ...top.desc, status: "unpacking", offset: 0, total: top.desc.size });
      unpacked = await unpackImage(b, top.desc, {
        ...opts,
        ready: (digest) => fetchedBlobs.get(digest)?.promise ?? Promise.resolve(),
      });
      report({ ...top.desc, status: "unpacked", offset: top.desc.size, total: top.desc.size });
    })();
    // Both run to the end (nothing is left writing once the lease goes); the first failure is thrown.
    const [f, u] = await Promise.allSettled([
      fetching.then(() => labelChildren(b.content, top.desc, opts.platform)),
      unpacking,
    ]);
    if (f.status === "rejected") throw f.reason;
    if (u.status === "rejected") throw u.reason;
    const image = await b.images.put({ name, target: top.desc, labels: opts.labels });
    return { image, fetched, existing, unpacked };
  });
}
