/**
 * The small interfaces image operations run against. They can be backed by
 * the daemon's local stores (see local.ts) or by clients of the daemon's
 * Content, Images, Snapshots and Diff services; the import, pull, unpack
 * and export code does not know which.
 *
 * @module
 */

import type { Descriptor, Image } from "../metadata/mod.ts";
import type { Mount } from "../snapshots/mod.ts";

export type { Descriptor, Image, Mount };

/** An open ingest: bytes in order, then commit (verified) or close (resumable) or abort. */
export interface BlobWriter {
  /** Bytes written so far: where the next write lands (the resume point). */
  readonly offset: number;
  write(chunk: Uint8Array): Promise<void>;
  /** Drops everything written (resume refused by the source). */
  truncate(): Promise<void>;
  /**
   * Installs the blob if `size` and `expected` match what was written;
   * FailedPrecondition otherwise (the ingest stays until aborted). A blob
   * that exists already is success too (labels are then merged onto it).
   * Returns the digest.
   */
  commit(size: number, expected?: string, labels?: Record<string, string>): Promise<string>;
  /** Stops writing; the ingest stays resumable. */
  close(): Promise<void>;
}

/** Blob access for image operations. */
export interface ContentAccess {
  /** Size and labels of `digest`; NotFound when absent. */
  info(digest: string): Promise<{ digest: string; size: number; labels: Record<string, string> }>;
  /** Streams `digest` from `offset`. */
  read(digest: string, offset?: number): Promise<ReadableStream<Uint8Array>>;
  /**
   * Opens or resumes ingest `ref`. When `expected` is present already,
   * AlreadyExists (and the blob then counts as held by the current lease).
   */
  writer(ref: string, opts?: { total?: number; expected?: string }): Promise<BlobWriter>;
  /** Removes ingest `ref` and its bytes (absent is fine). */
  abort(ref: string): Promise<void>;
  /** Sets (merges) labels on `digest`. */
  setLabels(digest: string, labels: Record<string, string>): Promise<void>;
}

/** Image records. */
export interface ImageRecords {
  /** The image, or undefined. */
  get(name: string): Promise<Image | undefined>;
  /** Creates `name`, or points an existing `name` at `target`. */
  put(image: { name: string; target: Descriptor; labels?: Record<string, string> }): Promise<Image>;
  list(filters?: string[]): Promise<Image[]>;
  delete(name: string): Promise<void>;
}

/** The snapshotter calls unpacking needs (names are the namespace's own). */
export interface LayerSnapshots {
  /** The snapshotter's name, e.g. "overlayfs". */
  readonly name: string;
  /** True when snapshot `key` exists. */
  exists(key: string): Promise<boolean>;
  prepare(key: string, parent: string, labels?: Record<string, string>): Promise<Mount[]>;
  /** Commits active `key` as `name`; AlreadyExists when `name` is taken. */
  commit(name: string, key: string, labels?: Record<string, string>): Promise<void>;
  remove(key: string): Promise<void>;
  mounts(key: string): Promise<Mount[]>;
}

/** What the Diff service does: layers onto mounts, and mounts' differences as layers. */
export interface LayerDiffer {
  /** Applies layer `desc` (read from the content) onto `mounts`; returns its diff id descriptor. */
  apply(desc: Descriptor, mounts: Mount[]): Promise<Descriptor>;
  /** The changes from `lower` to `upper` as a layer blob (gzip unless `mediaType` says tar) in the content store. */
  diff(
    lower: Mount[],
    upper: Mount[],
    opts?: { labels?: Record<string, string>; ref?: string; mediaType?: string },
  ): Promise<Descriptor>;
}

/** Everything an image operation needs, for one namespace. */
export interface ImageBackend {
  readonly content: ContentAccess;
  readonly images: ImageRecords;
  readonly differ: LayerDiffer;
  /** Snapshotter `name` (default overlayfs); NotFound/InvalidArgument when unknown. */
  snapshots(name?: string): LayerSnapshots;
  /**
   * Runs `fn` with a backend whose writes a fresh lease holds, so a garbage
   * collection cannot take half-imported blobs or snapshots; the lease is
   * deleted when `fn` settles.
   */
  withLease<T>(fn: (leased: ImageBackend) => Promise<T>): Promise<T>;
}
