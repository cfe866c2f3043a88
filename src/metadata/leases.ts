/**
 * Leases: client-held references that keep content and snapshots alive
 * while they are being assembled (a pull, an unpack, a commit).
 *
 * @module
 */

import { alreadyExists, invalidArgument } from "../errdefs/mod.ts";
import { adaptFields } from "../filters/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import { jsonToLabels, KeyedTable, labelsToJson, now } from "./db.ts";
import type { MetadataDB } from "./db.ts";

/** A lease. */
export interface Lease {
  id: string;
  labels: Record<string, string>;
  createdAt: Date;
}

/**
 * A resource a lease holds: `type` is "content" (id a digest), "ingests"
 * (id an ingest ref) or "snapshots/<snapshotter>" (id a snapshot name).
 */
export interface LeaseResource {
  id: string;
  type: string;
}

interface Row {
  id: string;
  labels: string;
  created: string;
}

function toLease(r: Row): Lease {
  return { id: r.id, labels: jsonToLabels(r.labels), createdAt: new Date(r.created) };
}

function checkResource(r: LeaseResource): void {
  if (!r.id) throw invalidArgument("lease resource id must not be empty");
  if (r.type === "content" || r.type === "ingests") return;
  if (r.type.startsWith("snapshots/") && r.type.length > "snapshots/".length) return;
  throw invalidArgument(
    `unsupported lease resource type ${
      JSON.stringify(r.type)
    } (content, ingests or snapshots/<snapshotter>)`,
  );
}

/** The filter adaptor of leases: id, labels.*. */
export function adaptLease(l: Lease) {
  return adaptFields({ id: l.id }, { labels: l.labels });
}

/** Leases and their resources per namespace. */
export class LeaseStore {
  private readonly rows: KeyedTable<Row, Lease>;

  constructor(private readonly m: MetadataDB) {
    this.rows = new KeyedTable(m, {
      table: "leases",
      key: "id",
      columns: "id, labels, created",
      describe: (k) => `lease ${JSON.stringify(k)}`,
      to: toLease,
      adapt: adaptLease,
    });
  }

  /** Creates lease `id` (any non-empty text, as clients make random ids); AlreadyExists if taken. */
  create(namespace: string, id: string, labels: Record<string, string> = {}): Lease {
    if (!id) throw invalidArgument("lease id must be provided");
    validateLabels(labels);
    return this.m.tx(() => {
      this.m.ensureNamespace(namespace);
      if (this.m.get("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", namespace, id)) {
        throw alreadyExists(`lease ${JSON.stringify(id)}`);
      }
      this.m.run(
        "INSERT INTO leases (namespace, id, labels, created) VALUES (?, ?, ?, ?)",
        namespace,
        id,
        labelsToJson(labels),
        now(),
      );
      this.m.markMutation(false);
      return this.get(namespace, id);
    });
  }

  /** Lease `id`; NotFound if absent. */
  get(namespace: string, id: string): Lease {
    return this.rows.get(namespace, id);
  }

  /** Leases of `namespace` passing `filters`, by id. */
  list(namespace: string, filters?: readonly string[]): Lease[] {
    return this.rows.list(namespace, filters);
  }

  /** Deletes the lease (and its resource list); what it held goes at the next collection. */
  delete(namespace: string, id: string): void {
    this.rows.delete(namespace, id);
  }

  /** Adds a resource to lease `id` (idempotent). */
  addResource(namespace: string, id: string, r: LeaseResource): void {
    checkResource(r);
    this.m.tx(() => {
      this.get(namespace, id);
      this.m.run(
        "INSERT OR IGNORE INTO lease_resources (namespace, lease_id, type, id) VALUES (?, ?, ?, ?)",
        namespace,
        id,
        r.type,
        r.id,
      );
      this.m.markMutation(false);
    });
  }

  /** Removes a resource from lease `id` (absent resources are fine). */
  deleteResource(namespace: string, id: string, r: LeaseResource): void {
    checkResource(r);
    this.m.tx(() => {
      this.get(namespace, id);
      const { changes } = this.m.run(
        "DELETE FROM lease_resources WHERE namespace = ? AND lease_id = ? AND type = ? AND id = ?",
        namespace,
        id,
        r.type,
        r.id,
      );
      if (changes > 0) this.m.markMutation(true);
    });
  }

  /** Resources held by lease `id`. */
  listResources(namespace: string, id: string): LeaseResource[] {
    this.get(namespace, id);
    return this.m.all<LeaseResource>(
      "SELECT id, type FROM lease_resources WHERE namespace = ? AND lease_id = ? ORDER BY type, id",
      namespace,
      id,
    ).map((r) => ({ id: r.id, type: r.type }));
  }
}
