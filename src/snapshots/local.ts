/**
 * What the overlayfs and native snapshotters share: metadata handling,
 * serialised mutations, directory staging and cleanup. Each concrete
 * snapshotter says how a snapshot directory is laid out and mounted.
 *
 * @module
 */

import { adaptFields, parseFilters } from "../filters/mod.ts";
import { log } from "../log/mod.ts";
import { MetaStore, type StoredSnapshot } from "./metastore.ts";
import type { Kind, Mount, SnapshotInfo, SnapshotOptions, Snapshotter, Usage } from "./types.ts";
import { diskUsage } from "./usage.ts";

/** Mutations take turns: directory work and metadata must not interleave. */
class Mutex {
  private tail: Promise<unknown> = Promise.resolve();
  run<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => {});
    return p;
  }
}

/** Base of the directory-backed snapshotters. */
export abstract class LocalSnapshotter implements Snapshotter {
  protected readonly ms: MetaStore;
  private readonly lock = new Mutex();

  protected constructor(readonly name: string, readonly root: string) {
    this.ms = new MetaStore(`${root}/metadata.db`);
  }

  /** Directory of snapshot `id`. */
  protected snapshotDir(id: number): string {
    return `${this.root}/snapshots/${id}`;
  }

  /** The directory holding snapshot `id`'s own files. */
  protected abstract layerDir(id: number): string;

  /** Fills the staging directory `td` of a new snapshot whose parent chain is known. */
  protected abstract populate(
    td: string,
    kind: "active" | "view",
    parentIds: number[],
  ): Promise<void>;

  /** Mounts for a snapshot. */
  protected abstract mountsFor(s: StoredSnapshot): Mount[];

  /** Whether a snapshot of `kind` with a parent gets a directory of its own. */
  protected needsDir(_kind: "active" | "view", _parent: string): boolean {
    return true;
  }

  stat(key: string): Promise<SnapshotInfo> {
    return Promise.resolve().then(() => this.ms.info(key).info);
  }

  update(
    info: Pick<SnapshotInfo, "name" | "labels">,
    fieldpaths?: readonly string[],
  ): Promise<SnapshotInfo> {
    return this.lock.run(() =>
      Promise.resolve(
        this.ms.tx(() => this.ms.updateLabels(info.name, info.labels ?? {}, fieldpaths)),
      )
    );
  }

  async usage(key: string): Promise<Usage> {
    const { id, info, usage } = this.ms.info(key);
    // Committed layers never change, so their usage was measured once at commit.
    if (info.kind !== "active") return usage;
    return await diskUsage(this.layerDir(id));
  }

  mounts(key: string): Promise<Mount[]> {
    return Promise.resolve().then(() => this.mountsFor(this.ms.get(key)));
  }

  prepare(key: string, parent = "", opts: SnapshotOptions = {}): Promise<Mount[]> {
    return this.create("active", key, parent, opts);
  }

  view(key: string, parent = "", opts: SnapshotOptions = {}): Promise<Mount[]> {
    return this.create("view", key, parent, opts);
  }

  private create(
    kind: "active" | "view",
    key: string,
    parent: string,
    opts: SnapshotOptions,
  ): Promise<Mount[]> {
    return this.lock.run(async () => {
      // Validate before doing any file work, so bad requests cost nothing.
      const parentIds = this.ms.checkCreate(key, parent, opts.labels ?? {});
      let td: string | undefined;
      if (this.needsDir(kind, parent)) {
        td = await Deno.makeTempDir({ dir: `${this.root}/snapshots`, prefix: "new-" });
        try {
          await Deno.chmod(td, 0o755);
          await this.populate(td, kind, parentIds);
        } catch (err) {
          await Deno.remove(td, { recursive: true }).catch(() => {});
          throw err;
        }
      }
      let stored: StoredSnapshot;
      try {
        stored = this.ms.tx(() => {
          const s = this.ms.create(kind, key, parent, opts.labels ?? {});
          // The rename is the last step inside the transaction: if it fails
          // the record goes too; if the process dies after it, cleanup()
          // finds a directory without a record and removes it.
          if (td) Deno.renameSync(td, this.snapshotDir(s.id));
          return s;
        });
      } catch (err) {
        if (td) await Deno.remove(td, { recursive: true }).catch(() => {});
        throw err;
      }
      return this.mountsFor(stored);
    });
  }

  commit(name: string, key: string, opts: SnapshotOptions = {}): Promise<void> {
    return this.lock.run(async () => {
      const s = this.ms.info(key);
      const usage = s.info.kind === "active"
        ? await diskUsage(this.layerDir(s.id))
        : { size: 0, inodes: 0 };
      this.ms.tx(() => this.ms.commit(key, name, usage, opts.labels ?? {}));
    });
  }

  remove(key: string): Promise<void> {
    return this.lock.run(async () => {
      const id = this.ms.tx(() => this.ms.remove(key));
      // The record is gone; a failure here only leaves a directory for cleanup().
      await Deno.remove(this.snapshotDir(id), { recursive: true }).catch((err) => {
        if (!(err instanceof Deno.errors.NotFound)) {
          log.warn("failed to remove snapshot directory", {
            path: this.snapshotDir(id),
            error: String(err),
          });
        }
      });
    });
  }

  async list(filters?: readonly string[]): Promise<SnapshotInfo[]> {
    const out: SnapshotInfo[] = [];
    await this.walk((i) => {
      out.push(i);
    }, filters);
    return out;
  }

  async walk(
    fn: (info: SnapshotInfo) => void | Promise<void>,
    filters?: readonly string[],
  ): Promise<void> {
    const filter = parseFilters(filters);
    for (const { info } of this.ms.all()) {
      if (filter.match(adaptSnapshot(info))) await fn(info);
    }
  }

  cleanup(): Promise<void> {
    return this.lock.run(async () => {
      const ids = this.ms.ids();
      for await (const e of Deno.readDir(`${this.root}/snapshots`)) {
        if (/^\d+$/.test(e.name) && ids.has(Number(e.name))) continue;
        log.info("removing unreferenced snapshot directory", {
          snapshotter: this.name,
          dir: e.name,
        });
        await Deno.remove(`${this.root}/snapshots/${e.name}`, { recursive: true }).catch((err) => {
          log.warn("failed to remove directory", { path: e.name, error: String(err) });
        });
      }
    });
  }

  close(): void {
    this.ms.close();
  }
}

/** The filter adaptor of snapshots (containerd's field names). */
export function adaptSnapshot(info: SnapshotInfo) {
  const kind: Kind = info.kind;
  return adaptFields({ kind, name: info.name, parent: info.parent }, { labels: info.labels });
}
