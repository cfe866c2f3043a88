/**
 * The metadata database: one SQLite file, a versioned schema, and the
 * transaction and lock discipline every store in this folder follows.
 *
 * @module
 */

import type { SQLInputValue, StatementSync } from "node:sqlite";
import { BerthError, Code, failedPrecondition, invalidArgument, notFound } from "../errdefs/mod.ts";
import { type Adaptor, parseFilters } from "../filters/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";

// Imported dynamically: a bundle evaluates its static node: imports at every
// start, whatever the mode.
const { DatabaseSync } = await import("node:sqlite");
type DatabaseSync = InstanceType<typeof DatabaseSync>;

/** Directory of the metadata database inside berth's state root. */
export const METADATA_PLUGIN_DIR = "io.containerd.metadata.v1.sqlite";

/** A schema change: runs inside the transaction that records its version. */
export type Migration = (db: DatabaseSync) => void;

/**
 * Schema migrations in order; the database's version is how many have run.
 * Append only: never edit one that has shipped.
 */
export const MIGRATIONS: readonly Migration[] = [
  (db) =>
    db.exec(`
    CREATE TABLE namespaces (
      name TEXT PRIMARY KEY,
      labels TEXT NOT NULL DEFAULT '{}',
      created TEXT NOT NULL,
      updated TEXT NOT NULL
    );
    CREATE TABLE containers (
      namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
      id TEXT NOT NULL,
      labels TEXT NOT NULL DEFAULT '{}',
      image TEXT NOT NULL DEFAULT '',
      runtime_name TEXT NOT NULL,
      runtime_options_type_url TEXT,
      runtime_options_value BLOB,
      spec_type_url TEXT NOT NULL,
      spec_value BLOB NOT NULL,
      snapshotter TEXT NOT NULL DEFAULT '',
      snapshot_key TEXT NOT NULL DEFAULT '',
      extensions TEXT NOT NULL DEFAULT '{}',
      sandbox TEXT NOT NULL DEFAULT '',
      created TEXT NOT NULL,
      updated TEXT NOT NULL,
      PRIMARY KEY (namespace, id)
    );
    CREATE TABLE images (
      namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
      name TEXT NOT NULL,
      media_type TEXT NOT NULL,
      digest TEXT NOT NULL,
      size INTEGER NOT NULL,
      annotations TEXT NOT NULL DEFAULT '{}',
      labels TEXT NOT NULL DEFAULT '{}',
      created TEXT NOT NULL,
      updated TEXT NOT NULL,
      PRIMARY KEY (namespace, name)
    );
    CREATE TABLE leases (
      namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
      id TEXT NOT NULL,
      labels TEXT NOT NULL DEFAULT '{}',
      created TEXT NOT NULL,
      PRIMARY KEY (namespace, id)
    );
    CREATE TABLE lease_resources (
      namespace TEXT NOT NULL,
      lease_id TEXT NOT NULL,
      type TEXT NOT NULL,
      id TEXT NOT NULL,
      PRIMARY KEY (namespace, lease_id, type, id),
      FOREIGN KEY (namespace, lease_id) REFERENCES leases(namespace, id) ON DELETE CASCADE
    );
    CREATE TABLE content (
      namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
      digest TEXT NOT NULL,
      size INTEGER NOT NULL,
      labels TEXT NOT NULL DEFAULT '{}',
      created TEXT NOT NULL,
      updated TEXT NOT NULL,
      PRIMARY KEY (namespace, digest)
    );
    CREATE TABLE ingests (
      namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE CASCADE,
      ref TEXT NOT NULL,
      expected TEXT NOT NULL DEFAULT '',
      expire_at TEXT,
      PRIMARY KEY (namespace, ref)
    );
    CREATE TABLE snapshots (
      seq INTEGER PRIMARY KEY AUTOINCREMENT,
      namespace TEXT NOT NULL REFERENCES namespaces(name) ON DELETE RESTRICT,
      snapshotter TEXT NOT NULL,
      name TEXT NOT NULL,
      backend_key TEXT NOT NULL,
      parent TEXT NOT NULL DEFAULT '',
      labels TEXT NOT NULL DEFAULT '{}',
      created TEXT NOT NULL,
      updated TEXT NOT NULL,
      UNIQUE (namespace, snapshotter, name)
    );
    CREATE INDEX snapshots_parent ON snapshots(namespace, snapshotter, parent);
    CREATE INDEX snapshots_backend ON snapshots(snapshotter, backend_key);
  `),
];

// Distinct SQL texts kept prepared (the stores use a few dozen).
const STATEMENT_CACHE = 256;

/** Async mutual exclusion, for work that spans the database and the file system. */
export class AsyncLock {
  private tail: Promise<unknown> = Promise.resolve();
  /** Runs `fn` when every earlier holder has finished. */
  run<T>(fn: () => Promise<T> | T): Promise<T> {
    const p = this.tail.then(fn, fn);
    this.tail = p.catch(() => {});
    return p;
  }
}

/** JSON text of a string map, dropping empty values (an empty label means "unset", as in containerd). */
export function labelsToJson(labels: Record<string, string> | undefined): string {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(labels ?? {})) if (v !== "") out[k] = v;
  return JSON.stringify(out);
}

/** Parses a map stored by {@link labelsToJson}. */
export function jsonToLabels(text: string | null | undefined): Record<string, string> {
  return text ? JSON.parse(text) : {};
}

/**
 * Applies containerd's field-mask rules for one map field named `field`
 * ("labels", "annotations"): "<field>" replaces the map, "<field>.<k>" sets
 * or unsets one key. Returns the new map, or undefined when `path` is not
 * about this field.
 */
export function applyMapPath(
  field: string,
  path: string,
  current: Record<string, string>,
  given: Record<string, string> | undefined,
): Record<string, string> | undefined {
  if (path === field) return { ...(given ?? {}) };
  if (path.startsWith(`${field}.`)) {
    const key = path.slice(field.length + 1);
    const next = { ...current };
    const v = given?.[key];
    if (v === undefined || v === "") delete next[key];
    else next[key] = v;
    return next;
  }
  return undefined;
}

/**
 * The labels after containerd's field paths for an object whose only
 * updatable field is its labels: none replaces them all, "labels" and
 * "labels.<k>" apply; any other path is InvalidArgument naming `what`.
 */
export function labelsByPaths(
  what: string,
  current: Record<string, string>,
  given: Record<string, string> | undefined,
  fieldpaths: readonly string[],
): Record<string, string> {
  if (fieldpaths.length === 0) return { ...(given ?? {}) };
  let labels = current;
  for (const p of fieldpaths) {
    const next = applyMapPath("labels", p, labels, given);
    if (!next) throw invalidArgument(`cannot update ${JSON.stringify(p)} field on ${what}`);
    labels = next;
  }
  return labels;
}

/** The columns every labelled record's table has. */
export interface LabeledRow {
  labels: string;
  created: string;
  updated: string;
}

/** Labels and times of a {@link LabeledRow}, as the stores return them. */
export function labeledFields(
  r: LabeledRow,
): { labels: Record<string, string>; createdAt: Date; updatedAt: Date } {
  return {
    labels: jsonToLabels(r.labels),
    createdAt: new Date(r.created),
    updatedAt: new Date(r.updated),
  };
}

/** Current time as stored. */
export function now(): string {
  return new Date().toISOString();
}

/**
 * The open database with its schema migrated. Every mutation of every
 * store runs in {@link tx}: one SQLite transaction, so a crash never
 * leaves half a change. Callbacks registered with {@link onMutation} hear
 * about committed changes (deletions are "dirty": the garbage collector
 * may have work).
 */
export class MetadataDB {
  /** The SQLite handle, for the stores of this folder. */
  readonly db: DatabaseSync;
  /**
   * Held by garbage collection for its whole run, and by anything that must
   * not interleave with it (a blob committed but not yet recorded).
   */
  readonly gcLock = new AsyncLock();
  private depth = 0;
  private dirtyInTx = false;
  private mutatedInTx = false;
  private readonly callbacks: ((dirty: boolean) => void)[] = [];
  // Prepared statements by SQL text: preparing costs ~100 us here, more than
  // running a point lookup. Bounded, since a few callers build SQL text.
  private readonly stmts = new Map<string, StatementSync>();

  private constructor(readonly path: string) {
    this.db = new DatabaseSync(path);
    this.db.exec(
      "PRAGMA journal_mode = WAL; PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 5000;",
    );
    this.migrate();
  }

  /** Opens (creating and migrating) the database at `<stateRoot>/io.containerd.metadata.v1.sqlite/meta.db`. */
  static async open(stateRoot: string): Promise<MetadataDB> {
    const dir = `${stateRoot}/${METADATA_PLUGIN_DIR}`;
    await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
    return new MetadataDB(`${dir}/meta.db`);
  }

  /** The schema version of the open database. */
  version(): number {
    const row = this.db.prepare("SELECT version FROM schema_version").get() as
      | { version: number }
      | undefined;
    return row?.version ?? 0;
  }

  private migrate(): void {
    this.db.exec("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
    if (!this.db.prepare("SELECT 1 FROM schema_version").get()) {
      this.db.prepare("INSERT INTO schema_version (version) VALUES (0)").run();
    }
    const from = this.version();
    if (from > MIGRATIONS.length) {
      this.db.close();
      throw failedPrecondition(
        `${this.path}: schema version ${from} is newer than this berth understands (${MIGRATIONS.length})`,
      );
    }
    for (let v = from; v < MIGRATIONS.length; v++) {
      this.tx(() => {
        MIGRATIONS[v](this.db);
        this.db.prepare("UPDATE schema_version SET version = ?").run(v + 1);
      });
    }
  }

  /**
   * Runs `fn` in one write transaction (nested calls join the outer one).
   * Rolled back if `fn` throws. `fn` must be synchronous: the transaction
   * cannot stay open across an await.
   */
  tx<T>(fn: () => T): T {
    if (this.depth > 0) {
      this.depth++;
      try {
        return fn();
      } finally {
        this.depth--;
      }
    }
    this.db.exec("BEGIN IMMEDIATE");
    this.depth = 1;
    this.dirtyInTx = false;
    this.mutatedInTx = false;
    let out: T;
    try {
      out = fn();
      if (out instanceof Promise) throw new Error("metadata transactions must be synchronous");
      this.db.exec("COMMIT");
    } catch (err) {
      // SQLite ends the transaction itself on some failures (a full disk):
      // a ROLLBACK then fails, and its error would hide the real one.
      if (this.db.isTransaction) this.db.exec("ROLLBACK");
      throw sqliteError(err);
    } finally {
      this.depth = 0;
    }
    if (this.mutatedInTx) { for (const cb of this.callbacks) cb(this.dirtyInTx); }
    return out;
  }

  /** Marks the current transaction as a change; `dirty` when something was removed. */
  markMutation(dirty: boolean): void {
    this.mutatedInTx = true;
    if (dirty) this.dirtyInTx = true;
  }

  /** Calls `fn(dirty)` after each committed change. */
  onMutation(fn: (dirty: boolean) => void): void {
    this.callbacks.push(fn);
  }

  /** The prepared statement for `sql`, made once and reused. */
  private prepared(sql: string): StatementSync {
    let st = this.stmts.get(sql);
    if (st === undefined) {
      st = this.db.prepare(sql);
      if (this.stmts.size >= STATEMENT_CACHE) this.stmts.clear();
      this.stmts.set(sql, st);
    }
    return st;
  }

  /** Runs a statement. */
  run(sql: string, ...params: SQLInputValue[]): { changes: number } {
    const r = this.prepared(sql).run(...params);
    return { changes: Number(r.changes) };
  }

  /** First row of a query, typed by the caller. */
  get<T>(sql: string, ...params: SQLInputValue[]): T | undefined {
    return this.prepared(sql).get(...params) as T | undefined;
  }

  /** All rows of a query, typed by the caller. */
  all<T>(sql: string, ...params: SQLInputValue[]): T[] {
    return this.prepared(sql).all(...params) as unknown as T[];
  }

  /** The row a query finds; NotFound naming `what` when there is none. */
  mustGet<T>(what: string, sql: string, ...params: SQLInputValue[]): T {
    const r = this.get<T>(sql, ...params);
    if (!r) throw notFound(what);
    return r;
  }

  /**
   * The rows of a query as records (`to`), keeping those that match any of
   * `filters` (containerd's filter syntax, through `adapt`).
   */
  listFiltered<R, T>(
    filters: readonly string[] | undefined,
    to: (r: R) => T,
    adapt: (t: T) => Adaptor,
    sql: string,
    ...params: SQLInputValue[]
  ): T[] {
    const f = parseFilters(filters);
    return this.all<R>(sql, ...params).map(to).filter((t) => f.match(adapt(t)));
  }

  /**
   * Validates `namespace` and creates it if it does not exist yet: objects
   * may be created in a namespace nobody created explicitly, as in containerd.
   */
  ensureNamespace(namespace: string): void {
    validateIdentifier(namespace, "namespace");
    const t = now();
    this.run(
      "INSERT OR IGNORE INTO namespaces (name, labels, created, updated) VALUES (?, '{}', ?, ?)",
      namespace,
      t,
      t,
    );
  }

  /** Closes the database. */
  close(): void {
    this.stmts.clear();
    if (this.db.isOpen) this.db.close();
  }
}

/** What a {@link KeyedTable} reads: its table, key column and record conversion. */
export interface KeyedTableSpec<R, T> {
  table: string;
  /** The column that names a record within its namespace. */
  key: string;
  /** Columns to select (default all). */
  columns?: string;
  /** How a missing record is named in NotFound, e.g. `container "x"`. */
  describe(key: string): string;
  to(row: R): T;
  adapt(record: T): Adaptor;
}

/**
 * The reads and the delete shared by the stores whose records are keyed by
 * (namespace, one column): containers, images, content, leases.
 */
export class KeyedTable<R, T> {
  constructor(private readonly m: MetadataDB, private readonly spec: KeyedTableSpec<R, T>) {}

  /** The record `key` of `namespace`; NotFound if absent. */
  get(namespace: string, key: string): T {
    const { table, key: col, columns = "*", describe, to } = this.spec;
    checkNamespace(namespace);
    return to(
      this.m.mustGet<R>(
        describe(key),
        `SELECT ${columns} FROM ${table} WHERE namespace = ? AND ${col} = ?`,
        namespace,
        key,
      ),
    );
  }

  /** Records of `namespace` passing `filters` (any of them), by key. */
  list(namespace: string, filters?: readonly string[]): T[] {
    const { table, key: col, columns = "*", to, adapt } = this.spec;
    checkNamespace(namespace);
    return this.m.listFiltered(
      filters,
      to,
      adapt,
      `SELECT ${columns} FROM ${table} WHERE namespace = ? ORDER BY ${col}`,
      namespace,
    );
  }

  /**
   * Deletes record `key`; NotFound if absent. Marks a mutation that may
   * orphan content, so the next collection runs.
   */
  delete(namespace: string, key: string): void {
    const { table, key: col, describe } = this.spec;
    checkNamespace(namespace);
    this.m.tx(() => {
      const sql = `DELETE FROM ${table} WHERE namespace = ? AND ${col} = ?`;
      if (this.m.run(sql, namespace, key).changes === 0) throw notFound(describe(key));
      this.m.markMutation(true);
    });
  }
}

/** Validates a namespace name for reads (reads never create namespaces). */
export function checkNamespace(namespace: string): void {
  validateIdentifier(namespace, "namespace");
}

/**
 * SQLite's full disk ("database or disk is full", no errno attached) as
 * ResourceExhausted naming the metadata store; other errors as thrown.
 */
function sqliteError(err: unknown): unknown {
  if (err instanceof Error && /database or disk is full/.test(err.message)) {
    return new BerthError(Code.ResourceExhausted, `metadata: ${err.message}`, { cause: err });
  }
  return err;
}
