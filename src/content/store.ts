/**
 * The local content store: immutable blobs addressed by digest, and
 * resumable ingests that become blobs only once their digest checks out.
 *
 * @module
 */

import {
  alreadyExists,
  Code,
  failedPrecondition,
  invalidArgument,
  isCode,
  notFound,
  unavailable,
} from "../errdefs/mod.ts";
import { adaptFields, parseFilters } from "../filters/mod.ts";
import { log } from "../log/mod.ts";
import { CANONICAL_ALGORITHM, Digester, digestOf, parseDigest } from "./digest.ts";
import { exists } from "../fsutil/mod.ts";

/** What the store knows about one blob (labels live in the metadata store). */
export interface ContentInfo {
  digest: string;
  size: number;
  createdAt: Date;
  updatedAt: Date;
}

/** Progress of one ingest. */
export interface IngestStatus {
  ref: string;
  /** Bytes written so far (the resume point). */
  offset: number;
  /** Expected total size, 0 when unknown. */
  total: number;
  /** Expected digest, when the active writer was given one. */
  expected?: string;
  startedAt: Date;
  updatedAt: Date;
}

/** Options of {@link ContentStore.writer}. */
export interface WriterOptions {
  /** Size the blob should have; recorded as the ingest's total. */
  expectedSize?: number;
  /** Digest the blob should have; if that blob exists already, opening fails with AlreadyExists. */
  expectedDigest?: string;
}

/** Random access to one blob; close it when done. */
export interface ContentReaderAt {
  readonly size: number;
  /** Reads into `buf` from `offset`; returns bytes read, 0 at the end. */
  readAt(buf: Uint8Array, offset: number): Promise<number>;
  close(): void;
}

const CHUNK = 1 << 20;

// Writers hold their ref for their lifetime, so that two pulls of the same
// layer never interleave bytes in one ingest file.
const lockedRefs = new Map<string, Date>();

/**
 * True for the answer a writer gets while another holds its ref: Unavailable,
 * "ref R locked ..." (containerd's words too, so its daemon's answer is
 * recognised as well). Any other Unavailable (a daemon gone, a connection
 * lost) is not a lock, and waiting for it to clear could wait for ever.
 */
export function isLocked(err: unknown): boolean {
  return isCode(err, Code.Unavailable) && /\blocked\b/.test((err as Error).message);
}

function lockRef(key: string, ref: string): void {
  const since = lockedRefs.get(key);
  if (since) {
    const secs = ((Date.now() - since.getTime()) / 1000).toFixed(1);
    throw unavailable(`ref ${ref} locked for ${secs}s (since ${since.toISOString()})`);
  }
  lockedRefs.set(key, new Date());
}

function unlockRef(key: string): void {
  lockedRefs.delete(key);
}

// Small state files are written beside and renamed over, so a crash leaves
// either the old or the new text, never half of it.
async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, text);
  await Deno.rename(tmp, path);
}

async function readText(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * The content store of one berth root, laid out as containerd's:
 * `<root>/blobs/<alg>/<hex>` and `<root>/ingest/<sha256(ref)>/{data,ref,startedat,updatedat,total}`.
 * Blobs are created only by renaming a fully written, verified ingest file,
 * so a crash mid-write leaves ingest state and never a partial blob.
 */
export class ContentStore {
  private constructor(readonly root: string) {}

  /** Opens (creating as needed) the store at `root`, e.g. `<state>/io.containerd.content.v1.content`. */
  static async open(root: string): Promise<ContentStore> {
    await Deno.mkdir(`${root}/ingest`, { recursive: true });
    await Deno.mkdir(`${root}/blobs/${CANONICAL_ALGORITHM}`, { recursive: true });
    return new ContentStore(root);
  }

  /** Path of the blob file for `digest` (validated; the file may not exist). */
  blobPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return `${this.root}/blobs/${algorithm}/${hex}`;
  }

  /** @internal Directory of the ingest `ref`. */
  ingestDir(ref: string): string {
    return `${this.root}/ingest/${parseDigest(digestOf(ref)).hex}`;
  }

  /** Size and times of a blob; NotFound when absent. */
  async info(digest: string): Promise<ContentInfo> {
    const path = this.blobPath(digest);
    try {
      return infoFromStat(digest, await Deno.stat(path));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFound(`content ${digest}`);
      throw err;
    }
  }

  /** Opens a blob for random access. */
  async readerAt(digest: string): Promise<ContentReaderAt> {
    const path = this.blobPath(digest);
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFound(`content ${digest}`);
      throw err;
    }
    const size = (await file.stat()).size;
    // Reads seek the shared handle, so they take turns.
    let queue: Promise<unknown> = Promise.resolve();
    let closed = false;
    return {
      size,
      readAt(buf, offset) {
        const run = async () => {
          if (closed) throw failedPrecondition(`reader of ${digest} is closed`);
          await file.seek(offset, Deno.SeekMode.Start);
          let n = 0;
          while (n < buf.length) {
            const r = await file.read(buf.subarray(n));
            if (r === null) break;
            n += r;
          }
          return n;
        };
        const p = queue.then(run, run);
        queue = p.catch(() => {});
        return p;
      },
      close() {
        if (!closed) {
          closed = true;
          file.close();
        }
      },
    };
  }

  /**
   * A blob of at most {@link SMALL_READ} bytes (manifests, configs, indexes)
   * read at once, synchronously: an async open, stat and read each take a
   * trip through Deno's blocking-thread pool, which costs more than reading
   * a few KiB here. Undefined for larger blobs.
   */
  #readSmall(
    digest: string,
    opts: { offset?: number; length?: number },
  ): ReadableStream<Uint8Array> | undefined {
    const path = this.blobPath(digest);
    let size: number;
    try {
      size = Deno.statSync(path).size;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFound(`content ${digest}`);
      throw err;
    }
    if (size > SMALL_READ) return undefined;
    const [offset, end] = readRange(digest, size, opts);
    const data = Deno.readFileSync(path).subarray(offset, end);
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (data.length > 0) controller.enqueue(data);
        controller.close();
      },
    });
  }

  /**
   * Streams a blob from `offset` (default 0), at most `length` bytes,
   * one chunk at a time. The file is closed at the end or on cancel.
   */
  async read(
    digest: string,
    opts: { offset?: number; length?: number } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const small = this.#readSmall(digest, opts);
    if (small !== undefined) return small;
    const ra = await this.readerAt(digest);
    let offset: number, end: number;
    try {
      [offset, end] = readRange(digest, ra.size, opts);
    } catch (err) {
      ra.close();
      throw err;
    }
    let pos = offset;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (pos >= end) {
          ra.close();
          controller.close();
          return;
        }
        const buf = new Uint8Array(Math.min(CHUNK, end - pos));
        const n = await ra.readAt(buf, pos);
        if (n === 0) {
          ra.close();
          controller.close();
          return;
        }
        pos += n;
        controller.enqueue(n === buf.length ? buf : buf.subarray(0, n));
      },
      cancel() {
        ra.close();
      },
    }, { highWaterMark: 0 });
  }

  /** Every blob, optionally filtered (fields `digest`, `size`); see src/filters. */
  async list(filters?: readonly string[]): Promise<ContentInfo[]> {
    const out: ContentInfo[] = [];
    await this.walk((info) => {
      out.push(info);
    }, filters);
    return out;
  }

  /** Calls `fn` for each blob that passes `filters`. */
  async walk(
    fn: (info: ContentInfo) => void | Promise<void>,
    filters?: readonly string[],
  ): Promise<void> {
    const filter = parseFilters(filters);
    for await (const alg of Deno.readDir(`${this.root}/blobs`)) {
      if (!alg.isDirectory) continue;
      for await (const blob of Deno.readDir(`${this.root}/blobs/${alg.name}`)) {
        const digest = `${alg.name}:${blob.name}`;
        let info: ContentInfo;
        try {
          parseDigest(digest);
          info = infoFromStat(
            digest,
            await Deno.stat(`${this.root}/blobs/${alg.name}/${blob.name}`),
          );
        } catch (err) {
          // Stray files and blobs deleted meanwhile are skipped, not fatal.
          log.debug("skipping blob path", { path: `${alg.name}/${blob.name}`, error: String(err) });
          continue;
        }
        if (filter.match(adaptFields({ digest: info.digest, size: info.size }))) await fn(info);
      }
    }
  }

  /** Removes a blob; NotFound when absent. */
  async delete(digest: string): Promise<void> {
    try {
      await Deno.remove(this.blobPath(digest));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFound(`content ${digest}`);
      throw err;
    }
  }

  /**
   * Opens the ingest `ref` for writing. A new ref starts empty; an existing
   * one resumes at its offset (its data is re-hashed). Fails with
   * Unavailable while another writer holds the ref, and with AlreadyExists
   * when `expectedDigest` is already a blob.
   */
  async writer(ref: string, opts: WriterOptions = {}): Promise<ContentWriter> {
    if (!ref) throw invalidArgument("ingest ref must not be empty");
    const algorithm = opts.expectedDigest
      ? parseDigest(opts.expectedDigest).algorithm
      : CANONICAL_ALGORITHM;
    if (
      opts.expectedSize !== undefined &&
      (opts.expectedSize < 0 || !Number.isSafeInteger(opts.expectedSize))
    ) {
      throw invalidArgument(`invalid expected size ${opts.expectedSize}`);
    }
    const lockKey = this.ingestDir(ref);
    lockRef(lockKey, ref);
    try {
      if (opts.expectedDigest && await exists(this.blobPath(opts.expectedDigest))) {
        throw alreadyExists(`content ${opts.expectedDigest}`);
      }
      return await this.openWriter(ref, algorithm, opts);
    } catch (err) {
      unlockRef(lockKey);
      throw err;
    }
  }

  private async openWriter(
    ref: string,
    algorithm: string,
    opts: WriterOptions,
  ): Promise<ContentWriter> {
    const dir = this.ingestDir(ref);
    const digester = new Digester(algorithm);
    let total = opts.expectedSize ?? 0;
    let resumed: IngestStatus | undefined;
    try {
      await Deno.mkdir(dir);
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
      resumed = await this.resume(dir, ref, total, digester);
    }
    let startedAt = new Date();
    let updatedAt = startedAt;
    let offset = 0;
    if (resumed) {
      ({ startedAt, updatedAt, offset } = resumed);
      total = resumed.total || total;
    } else {
      digester.reset();
      await writeAtomic(`${dir}/ref`, ref);
      await writeAtomic(`${dir}/startedat`, startedAt.toISOString());
      await writeAtomic(`${dir}/updatedat`, updatedAt.toISOString());
      if (total > 0) await writeAtomic(`${dir}/total`, String(total));
      else await Deno.remove(`${dir}/total`).catch(() => {});
    }
    const file = await Deno.open(`${dir}/data`, { write: true, create: true });
    try {
      if (!resumed) await file.truncate(0);
      await file.seek(offset, Deno.SeekMode.Start);
    } catch (err) {
      file.close();
      throw err;
    }
    return new ContentWriter(this, ref, dir, file, digester, {
      ref,
      offset,
      total,
      expected: opts.expectedDigest,
      startedAt,
      updatedAt,
    });
  }

  // Reads back an interrupted ingest. Anything inconsistent means starting
  // over rather than trusting it (logged, as the bytes are thrown away).
  private async resume(
    dir: string,
    ref: string,
    total: number,
    digester: Digester,
  ): Promise<IngestStatus | undefined> {
    try {
      const st = await this.statusAt(dir);
      if (st.ref !== ref) throw new Error(`ref key does not match: ${st.ref} != ${ref}`);
      if (total > 0 && st.total > 0 && total !== st.total) {
        throw new Error(`expected size ${total} differs from the ingest's ${st.total}`);
      }
      const data = await Deno.open(`${dir}/data`, { read: true });
      let offset = 0;
      try {
        const buf = new Uint8Array(CHUNK);
        for (;;) {
          const n = await data.read(buf);
          if (n === null) break;
          digester.update(buf.subarray(0, n));
          offset += n;
        }
      } finally {
        data.close();
      }
      return { ...st, offset };
    } catch (err) {
      log.info("cannot resume ingest, starting it over", {
        ref,
        error: String((err as Error).message ?? err),
      });
      return undefined;
    }
  }

  private async statusAt(dir: string): Promise<IngestStatus> {
    let size: number;
    let mtime: Date | null;
    try {
      const st = await Deno.stat(`${dir}/data`);
      size = st.size;
      mtime = st.mtime;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFound(`ingest ${dir}`);
      throw err;
    }
    const ref = await readText(`${dir}/ref`);
    if (ref === undefined) throw notFound(`ingest ${dir}: ref`);
    const started = await readText(`${dir}/startedat`);
    const updated = await readText(`${dir}/updatedat`);
    if (started === undefined || updated === undefined) throw notFound(`ingest ${ref}: timestamps`);
    const startedAt = new Date(started.trim());
    let updatedAt = new Date(updated.trim());
    if (isNaN(startedAt.getTime()) || isNaN(updatedAt.getTime())) {
      throw invalidArgument(`ingest ${ref}: unreadable timestamps`);
    }
    if (mtime && mtime > updatedAt) updatedAt = mtime;
    const totalText = await readText(`${dir}/total`);
    const total = totalText ? Number.parseInt(totalText, 10) || 0 : 0;
    return { ref, offset: size, total, startedAt, updatedAt };
  }

  /** Progress of the ingest `ref`; NotFound when there is none. */
  async status(ref: string): Promise<IngestStatus> {
    const st = await this.statusAt(this.ingestDir(ref));
    const active = activeWriters.get(this)?.get(ref);
    return active ? { ...st, expected: active.expected } : st;
  }

  /** Every ingest, optionally filtered (field `ref`). */
  async listStatuses(filters?: readonly string[]): Promise<IngestStatus[]> {
    const filter = parseFilters(filters);
    const out: IngestStatus[] = [];
    for await (const e of Deno.readDir(`${this.root}/ingest`)) {
      if (!e.isDirectory) continue;
      let st: IngestStatus;
      try {
        st = await this.statusAt(`${this.root}/ingest/${e.name}`);
      } catch {
        continue; // half-created or being removed
      }
      const active = activeWriters.get(this)?.get(st.ref);
      if (active) st.expected = active.expected;
      if (filter.match(adaptFields({ ref: st.ref }))) out.push(st);
    }
    return out;
  }

  /** Cancels the ingest `ref` and removes its data; NotFound when there is none. */
  async abort(ref: string): Promise<void> {
    const dir = this.ingestDir(ref);
    if (!await exists(dir)) throw notFound(`ingest ref ${JSON.stringify(ref)}`);
    await Deno.remove(dir, { recursive: true });
  }

  /** @internal Moves a verified ingest file into place (see {@link ContentWriter.commit}). */
  async _install(dir: string, digest: string, mode: number): Promise<void> {
    const target = this.blobPath(digest);
    const parent = target.slice(0, target.lastIndexOf("/"));
    await Deno.mkdir(parent, { recursive: true });
    if (await exists(target)) {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      throw alreadyExists(`content ${digest}`);
    }
    // The data was synced before the rename; like containerd, the directory is not.
    await Deno.rename(`${dir}/data`, target);
    // Blobs are immutable: nobody should write to them once committed.
    await Deno.chmod(target, mode & 0o444).catch(() => {});
    const now = new Date();
    await Deno.utime(target, now, now).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch((err) => {
      log.warn("failed to remove ingest directory", { path: dir, error: String(err) });
    });
  }
}

// Expected digests of open writers, so status() can report them.
const activeWriters = new WeakMap<ContentStore, Map<string, { expected?: string }>>();

function infoFromStat(digest: string, st: Deno.FileInfo): ContentInfo {
  const created = st.mtime ?? new Date(0);
  return { digest, size: st.size, createdAt: created, updatedAt: st.atime ?? created };
}

/**
 * One open ingest. Write bytes in order, then {@link commit}; or
 * {@link close} to stop and resume later from the same ref.
 */
export class ContentWriter {
  private file: Deno.FsFile | undefined;
  private state: IngestStatus;

  /** @internal Made by {@link ContentStore.writer}. */
  constructor(
    private readonly store: ContentStore,
    readonly ref: string,
    private readonly dir: string,
    file: Deno.FsFile,
    private readonly digester: Digester,
    state: IngestStatus,
  ) {
    this.file = file;
    this.state = state;
    let m = activeWriters.get(store);
    if (!m) activeWriters.set(store, m = new Map());
    m.set(ref, { expected: state.expected });
  }

  /** Current progress: offset is where the next write lands. */
  status(): IngestStatus {
    return { ...this.state };
  }

  /** Digest of the bytes written so far. */
  digest(): string {
    return this.digester.digest();
  }

  private open(): Deno.FsFile {
    if (!this.file) throw failedPrecondition(`writer for ref ${this.ref} is closed`);
    return this.file;
  }

  /** Appends `chunk` at the current offset. */
  async write(chunk: Uint8Array): Promise<void> {
    const file = this.open();
    // The write runs on Deno's I/O thread while this one hashes.
    const first = file.write(chunk);
    this.digester.update(chunk);
    let n = await first;
    while (n < chunk.length) n += await file.write(chunk.subarray(n));
    this.state.offset += chunk.length;
    this.state.updatedAt = new Date();
  }

  /** Appends everything `stream` yields. */
  async writeStream(stream: ReadableStream<Uint8Array>): Promise<void> {
    for await (const chunk of stream) await this.write(chunk);
  }

  /** Drops all written bytes (only size 0 is supported, as in containerd). */
  async truncate(size: number): Promise<void> {
    if (size !== 0) throw invalidArgument("truncate: only size 0 is supported");
    const file = this.open();
    await file.truncate(0);
    await file.seek(0, Deno.SeekMode.Start);
    this.digester.reset();
    this.state.offset = 0;
  }

  /**
   * Verifies and installs the blob. `size` (if > 0) and `expected` (if
   * given) must match what was written, else FailedPrecondition and the
   * ingest stays as it is (resumable or abortable). A blob that already
   * exists gives AlreadyExists and the ingest is dropped; the content is
   * there either way. The writer is closed afterwards in every case.
   * Returns the digest of the installed blob.
   */
  async commit(size: number, expected?: string): Promise<string> {
    const file = this.open();
    this.file = undefined;
    try {
      if (expected) parseDigest(expected);
      await file.sync();
      const st = await file.stat();
      file.close();
      await writeAtomic(`${this.dir}/updatedat`, this.state.updatedAt.toISOString()).catch(
        () => {},
      );
      if (size > 0 && size !== st.size) {
        throw failedPrecondition(`unexpected commit size ${st.size}, expected ${size}`);
      }
      const digest = this.digester.digest();
      if (expected && expected !== digest) {
        throw failedPrecondition(`unexpected commit digest ${digest}, expected ${expected}`);
      }
      await this.store._install(this.dir, digest, st.mode ?? 0o444);
      return digest;
    } finally {
      try {
        file.close();
      } catch {
        // closed above
      }
      this.release();
    }
  }

  /** Stops writing; the ingest stays for a later writer to resume. Idempotent. */
  async close(): Promise<void> {
    const file = this.file;
    if (!file) return;
    this.file = undefined;
    try {
      await file.sync().catch(() => {});
      file.close();
      await writeAtomic(`${this.dir}/updatedat`, this.state.updatedAt.toISOString()).catch(
        () => {},
      );
    } finally {
      this.release();
    }
  }

  private release(): void {
    activeWriters.get(this.store)?.delete(this.ref);
    unlockRef(this.dir);
  }
}

/** Blobs up to this size are read in one synchronous call (see ContentStore's #readSmall). */
const SMALL_READ = 256 << 10;

/** The [offset, end) a read of a blob of `size` bytes covers; InvalidArgument outside it. */
function readRange(
  digest: string,
  size: number,
  opts: { offset?: number; length?: number },
): [number, number] {
  const offset = opts.offset ?? 0;
  if (offset < 0 || offset > size) {
    throw invalidArgument(`offset ${offset} is outside content ${digest} of ${size} bytes`);
  }
  const end = opts.length === undefined || opts.length <= 0
    ? size
    : Math.min(size, offset + opts.length);
  return [offset, end];
}
