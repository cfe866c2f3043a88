/**
 * A snapshotter as one namespace sees it: names are the namespace's own,
 * mapped onto backend keys through the snapshot records.
 *
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import { parseFilters } from "../filters/mod.ts";
import {
  adaptSnapshot,
  type Mount,
  type SnapshotInfo,
  type Snapshotter,
  type Usage,
} from "../snapshots/mod.ts";
import type { LeaseOption } from "./content.ts";
import type { MetadataDB } from "./db.ts";
import type { SnapshotRecord, SnapshotRecordStore } from "./snapshots.ts";

/** Options of prepare, view and commit through a {@link NamespacedSnapshotter}. */
export interface NamespacedSnapshotOptions extends LeaseOption {
  labels?: Record<string, string>;
}

// Labels with this prefix are meant for the snapshotter itself and are
// passed down to it; the rest stay in the namespace's record.
const BACKEND_LABEL_PREFIX = "containerd.io/snapshot/";

function backendLabels(labels: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) {
    if (k.startsWith(BACKEND_LABEL_PREFIX)) out[k] = v;
  }
  return out;
}

/**
 * containerd's metadata snapshotter: each call names a namespace; records
 * map its names to keys of the backend snapshotter. Removing only drops
 * the record; the backend snapshot goes at the next garbage collection.
 * Mutations hold the database's gcLock so they never interleave with a
 * collection.
 */
export class NamespacedSnapshotter {
  constructor(
    private readonly m: MetadataDB,
    private readonly records: SnapshotRecordStore,
    /** The backend snapshotter. */
    readonly backend: Snapshotter,
  ) {}

  /** The backend's name, e.g. "overlayfs". */
  get name(): string {
    return this.backend.name;
  }

  private async info(rec: SnapshotRecord): Promise<SnapshotInfo> {
    const b = await this.backend.stat(rec.backendKey);
    return {
      name: rec.name,
      parent: rec.parent,
      kind: b.kind,
      labels: rec.labels,
      created: rec.createdAt,
      updated: rec.updatedAt,
    };
  }

  /** Metadata of `key` in `namespace`. */
  async stat(namespace: string, key: string): Promise<SnapshotInfo> {
    return await this.info(this.records.get(namespace, this.name, key));
  }

  /** Label update (see SnapshotRecordStore.update). */
  async update(
    namespace: string,
    info: { name: string; labels?: Record<string, string> },
    fieldpaths?: readonly string[],
  ): Promise<SnapshotInfo> {
    return await this.info(this.records.update(namespace, this.name, info, fieldpaths));
  }

  /** Disk use of `key`'s own layer. */
  async usage(namespace: string, key: string): Promise<Usage> {
    return await this.backend.usage(this.records.get(namespace, this.name, key).backendKey);
  }

  /** Mounts of `key`. */
  async mounts(namespace: string, key: string): Promise<Mount[]> {
    return await this.backend.mounts(this.records.get(namespace, this.name, key).backendKey);
  }

  /** Creates active snapshot `key` on committed `parent`. */
  prepare(
    namespace: string,
    key: string,
    parent = "",
    opts: NamespacedSnapshotOptions = {},
  ): Promise<Mount[]> {
    return this.create("active", namespace, key, parent, opts);
  }

  /** Creates read-only view `key` of committed `parent`. */
  view(
    namespace: string,
    key: string,
    parent = "",
    opts: NamespacedSnapshotOptions = {},
  ): Promise<Mount[]> {
    return this.create("view", namespace, key, parent, opts);
  }

  private create(
    kind: "active" | "view",
    namespace: string,
    key: string,
    parent: string,
    opts: NamespacedSnapshotOptions,
  ): Promise<Mount[]> {
    return this.m.gcLock.run(async () => {
      const bparent = parent ? this.records.get(namespace, this.name, parent).backendKey : "";
      const rec = this.records.create(namespace, this.name, key, parent, opts.labels, opts);
      try {
        const labels = backendLabels(opts.labels);
        return kind === "active"
          ? await this.backend.prepare(rec.backendKey, bparent, { labels })
          : await this.backend.view(rec.backendKey, bparent, { labels });
      } catch (err) {
        this.records.delete(namespace, this.name, key);
        throw err;
      }
    });
  }

  /** Commits active `key` as `name` in the namespace. */
  commit(
    namespace: string,
    name: string,
    key: string,
    opts: NamespacedSnapshotOptions = {},
  ): Promise<void> {
    return this.m.gcLock.run(async () => {
      const active = this.records.get(namespace, this.name, key);
      const st = await this.backend.stat(active.backendKey);
      if (st.kind !== "active") {
        throw invalidArgument(`snapshot ${JSON.stringify(key)} is not active`);
      }
      const committed = this.records.create(
        namespace,
        this.name,
        name,
        active.parent,
        opts.labels,
        opts,
      );
      try {
        await this.backend.commit(committed.backendKey, active.backendKey, {
          labels: backendLabels(opts.labels),
        });
      } catch (err) {
        this.records.delete(namespace, this.name, name);
        throw err;
      }
      this.records.delete(namespace, this.name, key);
    });
  }

  /** Drops `key` from the namespace (FailedPrecondition while it has children). */
  remove(namespace: string, key: string): Promise<void> {
    return this.m.gcLock.run(() => {
      this.records.delete(namespace, this.name, key);
    });
  }

  /** Snapshots of `namespace` passing `filters` (kind, name, parent, labels.*). */
  async list(namespace: string, filters?: readonly string[]): Promise<SnapshotInfo[]> {
    const f = parseFilters(filters);
    const out: SnapshotInfo[] = [];
    for (const rec of this.records.list(namespace, this.name)) {
      let info: SnapshotInfo;
      try {
        info = await this.info(rec);
      } catch {
        continue; // backend gone meanwhile (collected)
      }
      if (f.match(adaptSnapshot(info))) out.push(info);
    }
    return out;
  }
}
