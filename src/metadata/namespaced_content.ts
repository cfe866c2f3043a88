/**
 * Content as one namespace sees it: the blob store's bytes joined with the
 * metadata store's per-namespace records (which blobs the namespace holds,
 * their labels, its ingests in flight). This is what containerd's metadata
 * content store does; the Content service and anything else that writes
 * blobs on a namespace's behalf go through it.
 *
 * @module
 */

import { ContentStore, type ContentWriter, type IngestStatus } from "../content/mod.ts";
import { alreadyExists, Code, isCode } from "../errdefs/mod.ts";
import { adaptFields, parseFilters } from "../filters/mod.ts";
import type { ContentRecord } from "./content.ts";
import type { Metadata } from "./metadata.ts";

/** Options of {@link NamespacedContent.writer}. */
export interface NamespacedWriterOptions {
  /** Size the blob should have (0: unknown). */
  total?: number;
  /** Digest the blob should have ("" or absent: unknown). */
  expected?: string;
  /** Lease that holds the ingest and the committed blob. */
  lease?: string;
}

/** The backend ingest ref of a namespace's ref: namespaces cannot contain "/", so this never collides. */
function backendRef(namespace: string, ref: string): string {
  return `${namespace}/${ref}`;
}

/** An ingest of one namespace; see {@link NamespacedContent.writer}. */
export class NamespacedWriter {
  /** @internal Made by {@link NamespacedContent.writer}. */
  constructor(
    private readonly owner: NamespacedContent,
    private readonly namespace: string,
    readonly ref: string,
    private readonly backend: ContentWriter,
    private readonly lease: string | undefined,
  ) {}

  /** Progress, with the namespace's own ref. */
  status(): IngestStatus {
    return { ...this.backend.status(), ref: this.ref };
  }

  /** Digest of the bytes written so far. */
  digest(): string {
    return this.backend.digest();
  }

  /** Appends `chunk`. */
  write(chunk: Uint8Array): Promise<void> {
    return this.backend.write(chunk);
  }

  /** Starts over from offset 0. */
  truncate(size: number): Promise<void> {
    return this.backend.truncate(size);
  }

  /**
   * Verifies and installs the blob, then records it in the namespace with
   * `labels`, all while holding the collector's lock, so no collection can
   * fall between the two. A blob that some other namespace committed first
   * is simply recorded here too; one this namespace already holds is
   * AlreadyExists. Returns the digest.
   */
  commit(
    size: number,
    expected: string | undefined,
    labels: Record<string, string> = {},
  ): Promise<string> {
    const { md } = this.owner;
    return md.db.gcLock.run(async () => {
      let digest: string;
      try {
        digest = await this.backend.commit(size, expected || undefined);
      } catch (err) {
        if (!isCode(err, Code.AlreadyExists)) throw err;
        digest = this.backend.digest(); // the bytes are there, written by someone else
      }
      const held = md.db.tx(() => {
        md.content.removeIngest(this.namespace, this.ref);
        // As containerd does: the lease now holds the blob, no longer the ingest.
        if (this.lease) {
          md.leases.deleteResource(this.namespace, this.lease, { type: "ingests", id: this.ref });
        }
        if (md.content.holdIfPresent(this.namespace, digest, this.lease)) return true;
        md.content.add(
          this.namespace,
          { digest, size: size > 0 ? size : this.backend.status().offset, labels },
          { lease: this.lease },
        );
        return false;
      });
      // The ingest is gone either way; the namespace's blob is the one it made.
      if (held) throw alreadyExists(`content ${digest}`);
      return digest;
    });
  }

  /** Stops writing; the ingest stays to be resumed or aborted. */
  close(): Promise<void> {
    return this.backend.close();
  }
}

/** Content of every namespace over one blob store and one metadata store. */
export class NamespacedContent {
  /** Joins `store` (bytes) and `md` (records). */
  constructor(readonly store: ContentStore, readonly md: Metadata) {}

  /** The namespace's record of `digest`; NotFound unless the namespace holds it. */
  info(namespace: string, digest: string): ContentRecord {
    return this.md.content.info(namespace, digest);
  }

  /** True, with `digest` added to `lease`, when the namespace holds it already. */
  holdIfPresent(namespace: string, digest: string, lease: string | undefined): boolean {
    return this.md.content.holdIfPresent(namespace, digest, lease);
  }

  /** Changes labels (field paths "labels", "labels.<k>"; none: replace all). */
  update(
    namespace: string,
    digest: string,
    labels: Record<string, string>,
    paths: readonly string[],
  ): ContentRecord {
    return this.md.content.update(namespace, { digest, labels }, paths);
  }

  /** Records of the namespace passing `filters` (digest, size, labels.*). */
  list(namespace: string, filters?: readonly string[]): ContentRecord[] {
    return this.md.content.list(namespace, filters);
  }

  /** Drops the namespace's hold on `digest`; the bytes go at the next collection when nobody holds them. */
  delete(namespace: string, digest: string): void {
    this.md.content.delete(namespace, digest);
  }

  /** Streams `length` bytes (0: to the end) of `digest` from `offset`, if the namespace holds it. */
  read(
    namespace: string,
    digest: string,
    offset = 0,
    length = 0,
  ): Promise<ReadableStream<Uint8Array>> {
    this.info(namespace, digest);
    return this.store.read(digest, { offset, length });
  }

  /** Progress of the namespace's ingest `ref`; NotFound when it has none. */
  async status(namespace: string, ref: string): Promise<IngestStatus> {
    const rec = this.md.content.getIngest(namespace, ref);
    const st = await this.store.status(backendRef(namespace, ref));
    return { ...st, ref, expected: st.expected || rec.expected || undefined };
  }

  /** The namespace's ingests passing `filters` (field `ref`). */
  async listStatuses(namespace: string, filters?: readonly string[]): Promise<IngestStatus[]> {
    const f = parseFilters(filters);
    const out: IngestStatus[] = [];
    for (const rec of this.md.content.listIngests(namespace)) {
      if (!f.match(adaptFields({ ref: rec.ref }))) continue;
      try {
        out.push(await this.status(namespace, rec.ref));
      } catch (err) {
        if (!isCode(err, Code.NotFound)) throw err; // recorded but never written: nothing to show
      }
    }
    return out;
  }

  /** Cancels the namespace's ingest `ref` and removes its data; NotFound when it has none. */
  async abort(namespace: string, ref: string): Promise<void> {
    this.md.content.getIngest(namespace, ref);
    try {
      await this.store.abort(backendRef(namespace, ref));
    } catch (err) {
      if (!isCode(err, Code.NotFound)) throw err;
    }
    this.md.content.removeIngest(namespace, ref);
  }

  /**
   * Opens (or resumes) the namespace's ingest `ref`. When `expected` is a
   * blob already: AlreadyExists, after recording it in the namespace if
   * another namespace had it (content is shared, as containerd's default
   * policy has it).
   */
  async writer(
    namespace: string,
    ref: string,
    opts: NamespacedWriterOptions = {},
  ): Promise<NamespacedWriter> {
    const expected = opts.expected || undefined;
    if (expected !== undefined) {
      if (this.holdIfPresent(namespace, expected, opts.lease)) {
        throw alreadyExists(`content ${expected}`);
      }
      const shared = await this.md.db.gcLock.run(async () => {
        let size: number;
        try {
          size = (await this.store.info(expected)).size;
        } catch (err) {
          if (isCode(err, Code.NotFound)) return false;
          throw err;
        }
        if (opts.total && opts.total !== size) return false;
        this.md.content.add(namespace, { digest: expected, size }, { lease: opts.lease });
        return true;
      });
      if (shared) throw alreadyExists(`content ${expected}`);
    }
    this.md.content.addIngest(namespace, { ref, expected: expected ?? "" }, { lease: opts.lease });
    const backend = await this.store.writer(backendRef(namespace, ref), {
      expectedSize: opts.total || undefined,
    });
    return new NamespacedWriter(this, namespace, ref, backend, opts.lease);
  }
}
