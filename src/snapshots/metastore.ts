/**
 * A snapshotter's own metadata: which snapshots exist, their kind, parent,
 * labels and recorded usage, in SQLite beside the snapshot directories.
 *
 * @module
 */

import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../errdefs/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import type { Kind, SnapshotInfo, Usage } from "./types.ts";

// Imported dynamically: a bundle evaluates its static node: imports at every
// start, whatever the mode.
const { DatabaseSync } = await import("node:sqlite");
type DatabaseSync = InstanceType<typeof DatabaseSync>;

/** One stored snapshot with its internal id and its ancestors' ids. */
export interface StoredSnapshot {
  id: number;
  kind: Kind;
  /** Ids of the parent chain, nearest first. */
  parentIds: number[];
}

interface Row {
  id: number;
  key: string;
  kind: Kind;
  parent_id: number | null;
  parent_key: string | null;
  labels: string;
  created: string;
  updated: string;
  size: number;
  inodes: number;
}

const SCHEMA_VERSION = 1;

const SELECT = `SELECT s.id, s.key, s.kind, s.parent_id, p.key AS parent_key, s.labels, s.created,
  s.updated, s.size, s.inodes FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id`;

function toInfo(r: Row): SnapshotInfo {
  return {
    name: r.key,
    parent: r.parent_key ?? "",
    kind: r.kind,
    labels: JSON.parse(r.labels),
    created: new Date(r.created),
    updated: new Date(r.updated),
  };
}

/** Snapshot metadata in `<root>/metadata.db` (WAL; one transaction per change). */
export class MetaStore {
  private readonly db: DatabaseSync;

  constructor(path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    );
    this.db.exec(`CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)`);
    const row = this.db.prepare("SELECT version FROM schema_version").get() as
      | { version: number }
      | undefined;
    if (!row) {
      this.tx(() => {
        // AUTOINCREMENT: ids are never reused, so a directory awaiting
        // removal can never be mistaken for a new snapshot's.
        this.db.exec(`CREATE TABLE snapshots (
          id INTEGER PRIMARY KEY AUTOINCREMENT,
          key TEXT NOT NULL UNIQUE,
          kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
          parent_id INTEGER REFERENCES snapshots(id) ON DELETE RESTRICT,
          labels TEXT NOT NULL DEFAULT '{}',
          created TEXT NOT NULL,
          updated TEXT NOT NULL,
          size INTEGER NOT NULL DEFAULT 0,
          inodes INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX snapshots_parent ON snapshots(parent_id);`);
        this.db.prepare("INSERT INTO schema_version (version) VALUES (?)").run(SCHEMA_VERSION);
      });
    } else if (row.version > SCHEMA_VERSION) {
      this.db.close();
      throw failedPrecondition(
        `${path}: schema version ${row.version} is newer than this berth (${SCHEMA_VERSION})`,
      );
    }
  }

  /** Runs `fn` in one write transaction; rolled back if it throws. */
  tx<T>(fn: () => T): T {
    this.db.exec("BEGIN IMMEDIATE");
    try {
      const out = fn();
      this.db.exec("COMMIT");
      return out;
    } catch (err) {
      this.db.exec("ROLLBACK");
      throw err;
    }
  }

  private row(key: string): Row {
    const r = this.db.prepare(`${SELECT} WHERE s.key = ?`).get(key) as Row | undefined;
    if (!r) throw notFound(`snapshot ${JSON.stringify(key)}`);
    return r;
  }

  private chain(parentId: number | null): number[] {
    const ids: number[] = [];
    const q = this.db.prepare("SELECT parent_id FROM snapshots WHERE id = ?");
    while (parentId !== null) {
      ids.push(parentId);
      parentId = (q.get(parentId) as { parent_id: number | null }).parent_id;
    }
    return ids;
  }

  /** Id, kind and ancestry of `key`. */
  get(key: string): StoredSnapshot {
    const r = this.row(key);
    return { id: r.id, kind: r.kind, parentIds: this.chain(r.parent_id) };
  }

  /** Metadata, recorded usage and id of `key`. */
  info(key: string): { id: number; info: SnapshotInfo; usage: Usage } {
    const r = this.row(key);
    return { id: r.id, info: toInfo(r), usage: { size: r.size, inodes: r.inodes } };
  }

  /**
   * Records a new active snapshot or view. Call inside {@link tx}; the
   * caller moves the directory into place before the transaction ends.
   */
  /**
   * Checks that `key` may be created on `parent` (which must be committed)
   * and returns the parent chain's ids, nearest first.
   */
  checkCreate(key: string, parent: string, labels: Record<string, string>): number[] {
    if (!key) throw invalidArgument("snapshot key must not be empty");
    validateLabels(labels);
    let parentIds: number[] = [];
    if (parent) {
      const p = this.db.prepare("SELECT id, kind, parent_id FROM snapshots WHERE key = ?").get(
        parent,
      ) as
        | { id: number; kind: Kind; parent_id: number | null }
        | undefined;
      if (!p) throw notFound(`parent snapshot ${JSON.stringify(parent)}`);
      if (p.kind !== "committed") {
        throw invalidArgument(`parent ${JSON.stringify(parent)} is not a committed snapshot`);
      }
      parentIds = [p.id, ...this.chain(p.parent_id)];
    }
    if (this.db.prepare("SELECT 1 FROM snapshots WHERE key = ?").get(key)) {
      throw alreadyExists(`snapshot ${JSON.stringify(key)}`);
    }
    return parentIds;
  }

  /**
   * Records a new active snapshot or view. Call inside {@link tx}; the
   * caller moves the directory into place before the transaction ends.
   */
  create(
    kind: "active" | "view",
    key: string,
    parent: string,
    labels: Record<string, string>,
  ): StoredSnapshot {
    const parentIds = this.checkCreate(key, parent, labels);
    const now = new Date().toISOString();
    const res = this.db.prepare(
      "INSERT INTO snapshots (key, kind, parent_id, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
    ).run(key, kind, parentIds[0] ?? null, JSON.stringify(labels), now, now);
    return { id: Number(res.lastInsertRowid), kind, parentIds };
  }

  /** Turns active `key` into committed `name`, keeping id and children. */
  commit(key: string, name: string, usage: Usage, labels: Record<string, string>): number {
    if (!name) throw invalidArgument("snapshot name must not be empty");
    validateLabels(labels);
    const r = this.row(key);
    if (r.kind !== "active") {
      throw failedPrecondition(`snapshot ${JSON.stringify(key)} is not active`);
    }
    if (this.db.prepare("SELECT 1 FROM snapshots WHERE key = ?").get(name)) {
      throw alreadyExists(`committed snapshot ${JSON.stringify(name)}`);
    }
    const now = new Date().toISOString();
    this.db.prepare(
      "UPDATE snapshots SET key = ?, kind = 'committed', labels = ?, size = ?, inodes = ?, created = ?, updated = ? WHERE id = ?",
    ).run(name, JSON.stringify(labels), usage.size, usage.inodes, now, now, r.id);
    return r.id;
  }

  /** Deletes `key`'s record; FailedPrecondition while children exist. Returns its id. */
  remove(key: string): number {
    const r = this.row(key);
    if (this.db.prepare("SELECT 1 FROM snapshots WHERE parent_id = ? LIMIT 1").get(r.id)) {
      throw failedPrecondition(`cannot remove snapshot ${JSON.stringify(key)}: it has children`);
    }
    this.db.prepare("DELETE FROM snapshots WHERE id = ?").run(r.id);
    return r.id;
  }

  /** Applies a label update (see Snapshotter.update) and returns the new metadata. */
  updateLabels(
    name: string,
    labels: Record<string, string>,
    fieldpaths?: readonly string[],
  ): SnapshotInfo {
    const r = this.row(name);
    let next: Record<string, string>;
    if (!fieldpaths || fieldpaths.length === 0) {
      next = { ...labels };
    } else {
      next = JSON.parse(r.labels);
      for (const path of fieldpaths) {
        if (path === "labels") {
          next = { ...labels };
        } else if (path.startsWith("labels.")) {
          const k = path.slice("labels.".length);
          if (Object.hasOwn(labels, k)) next[k] = labels[k];
          else delete next[k];
        } else {
          throw invalidArgument(
            `cannot update ${JSON.stringify(path)} field on snapshot ${JSON.stringify(name)}`,
          );
        }
      }
    }
    validateLabels(next);
    this.db.prepare("UPDATE snapshots SET labels = ?, updated = ? WHERE id = ?").run(
      JSON.stringify(next),
      new Date().toISOString(),
      r.id,
    );
    return toInfo(this.row(name));
  }

  /** All snapshots with their ids. */
  all(): { id: number; info: SnapshotInfo }[] {
    return (this.db.prepare(`${SELECT} ORDER BY s.id`).all() as unknown as Row[]).map((r) => ({
      id: r.id,
      info: toInfo(r),
    }));
  }

  /** Ids of every snapshot. */
  ids(): Set<number> {
    return new Set(
      (this.db.prepare("SELECT id FROM snapshots").all() as { id: number }[]).map((r) => r.id),
    );
  }

  /** Closes the database. */
  close(): void {
    if (this.db.isOpen) this.db.close();
  }
}
