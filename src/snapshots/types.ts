/**
 * The vocabulary shared by every snapshotter.
 *
 * @module
 */

/** What a snapshot is: being written, a read-only view, or an immutable layer. */
export type Kind = "active" | "view" | "committed";

/** Metadata of one snapshot, as Stat and Walk report it. */
export interface SnapshotInfo {
  /** The key (active, view) or name (committed). */
  name: string;
  /** Name of the committed parent, "" for none. */
  parent: string;
  kind: Kind;
  labels: Record<string, string>;
  created: Date;
  updated: Date;
}

/** Disk use of a snapshot's own layer (not its parents). */
export interface Usage {
  /** Bytes allocated on disk. */
  size: number;
  /** Distinct inodes. */
  inodes: number;
}

/** One mount a caller performs to see a snapshot, as containerd's mount.Mount. */
export interface Mount {
  /** File system type, e.g. "overlay" or "bind". */
  type: string;
  source: string;
  /** Mount options, e.g. "ro", "rbind", "lowerdir=...". */
  options: string[];
}

/** Options of {@link Snapshotter.prepare}, {@link Snapshotter.view} and {@link Snapshotter.commit}. */
export interface SnapshotOptions {
  labels?: Record<string, string>;
}

/**
 * containerd's snapshotter contract. A snapshotter hands out mounts and
 * keeps metadata; it never keeps anything mounted itself.
 */
export interface Snapshotter {
  /** The snapshotter's name, e.g. "overlayfs". */
  readonly name: string;
  /** Its directory, `<state>/io.containerd.snapshotter.v1.<name>`. */
  readonly root: string;
  /** Metadata of `key`; NotFound when absent. */
  stat(key: string): Promise<SnapshotInfo>;
  /**
   * Changes labels: `fieldpaths` "labels" replaces all, "labels.<k>" sets or
   * (when `info.labels` lacks k) removes one; none replaces all.
   */
  update(
    info: Pick<SnapshotInfo, "name" | "labels">,
    fieldpaths?: readonly string[],
  ): Promise<SnapshotInfo>;
  /** Disk use of `key`'s own layer. */
  usage(key: string): Promise<Usage>;
  /** The mounts of an active snapshot or view. */
  mounts(key: string): Promise<Mount[]>;
  /** Creates a writable snapshot `key` on top of committed `parent` ("" for none). */
  prepare(key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** Creates a read-only view `key` of committed `parent`. */
  view(key: string, parent?: string, opts?: SnapshotOptions): Promise<Mount[]>;
  /** Turns active snapshot `key` into committed snapshot `name`; `key` is gone afterwards. */
  commit(name: string, key: string, opts?: SnapshotOptions): Promise<void>;
  /** Removes `key`; FailedPrecondition while it has children. */
  remove(key: string): Promise<void>;
  /** Every snapshot passing `filters` (fields kind, name, parent, labels.*). */
  list(filters?: readonly string[]): Promise<SnapshotInfo[]>;
  /** Calls `fn` for each snapshot passing `filters`. */
  walk(
    fn: (info: SnapshotInfo) => void | Promise<void>,
    filters?: readonly string[],
  ): Promise<void>;
  /** Removes directories no snapshot owns any more (left by crashes). */
  cleanup(): Promise<void>;
  /** Closes the metadata database. */
  close(): void;
}
