/**
 * Per-namespace snapshot names mapped onto snapshotter keys, so that two
 * namespaces can each have a snapshot called "rootfs" without clashing.
 *
 * @module
 */

import { alreadyExists, failedPrecondition, invalidArgument, notFound } from "../errdefs/mod.ts";
import { adaptFields } from "../filters/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import { holdInLease, type LeaseOption } from "./content.ts";
import { checkNamespace, labeledFields, labelsByPaths, labelsToJson, now } from "./db.ts";
import type { LabeledRow, MetadataDB } from "./db.ts";

/** One namespace's snapshot. */
export interface SnapshotRecord {
  snapshotter: string;
  /** The name the namespace uses. */
  name: string;
  /** The key in the snapshotter itself: `<namespace>/<seq>/<name>`. */
  backendKey: string;
  /** The parent's name in the same namespace, "" for none. */
  parent: string;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

interface Row extends LabeledRow {
  seq: number;
  snapshotter: string;
  name: string;
  backend_key: string;
  parent: string;
}

function toRecord(r: Row): SnapshotRecord {
  return {
    snapshotter: r.snapshotter,
    name: r.name,
    backendKey: r.backend_key,
    parent: r.parent,
    ...labeledFields(r),
  };
}

/** The filter adaptor of snapshot records: name, parent, labels.*. */
export function adaptSnapshotRecord(s: SnapshotRecord) {
  return adaptFields({ name: s.name, parent: s.parent }, { labels: s.labels });
}

/** Snapshot records per namespace and snapshotter. */
export class SnapshotRecordStore {
  constructor(private readonly m: MetadataDB) {}

  /**
   * Records snapshot `name` on `parent` (which must exist in the namespace)
   * and allocates its backend key.
   */
  create(
    namespace: string,
    snapshotter: string,
    name: string,
    parent: string,
    labels: Record<string, string> = {},
    opts: LeaseOption = {},
  ): SnapshotRecord {
    if (!snapshotter) throw invalidArgument("snapshotter must be named");
    if (!name) throw invalidArgument("snapshot key must not be empty");
    validateLabels(labels);
    return this.m.tx(() => {
      this.m.ensureNamespace(namespace);
      if (parent && !this.find(namespace, snapshotter, parent)) {
        throw notFound(`parent snapshot ${JSON.stringify(parent)}`);
      }
      if (this.find(namespace, snapshotter, name)) {
        throw alreadyExists(`snapshot ${JSON.stringify(name)}`);
      }
      const t = now();
      const res = this.m.db.prepare(
        `INSERT INTO snapshots (namespace, snapshotter, name, backend_key, parent, labels, created, updated)
         VALUES (?, ?, ?, '', ?, ?, ?, ?)`,
      ).run(namespace, snapshotter, name, parent, labelsToJson(labels), t, t);
      const seq = Number(res.lastInsertRowid);
      this.m.run(
        "UPDATE snapshots SET backend_key = ? WHERE seq = ?",
        `${namespace}/${seq}/${name}`,
        seq,
      );
      holdInLease(this.m, namespace, opts.lease, `snapshots/${snapshotter}`, name);
      this.m.markMutation(false);
      return this.get(namespace, snapshotter, name);
    });
  }

  private find(namespace: string, snapshotter: string, name: string): Row | undefined {
    return this.m.get<Row>(
      "SELECT * FROM snapshots WHERE namespace = ? AND snapshotter = ? AND name = ?",
      namespace,
      snapshotter,
      name,
    );
  }

  /** The record of `name`; NotFound if absent. */
  get(namespace: string, snapshotter: string, name: string): SnapshotRecord {
    checkNamespace(namespace);
    const r = this.find(namespace, snapshotter, name);
    if (!r) throw notFound(`snapshot ${JSON.stringify(name)}`);
    return toRecord(r);
  }

  /** Records of one snapshotter in `namespace` passing `filters`. */
  list(namespace: string, snapshotter: string, filters?: readonly string[]): SnapshotRecord[] {
    checkNamespace(namespace);
    return this.m.listFiltered(
      filters,
      toRecord,
      adaptSnapshotRecord,
      "SELECT * FROM snapshots WHERE namespace = ? AND snapshotter = ? ORDER BY seq",
      namespace,
      snapshotter,
    );
  }

  /** Changes labels with "labels" / "labels.<k>" (none: replace all); other fields are InvalidArgument. */
  update(
    namespace: string,
    snapshotter: string,
    rec: { name: string; labels?: Record<string, string> },
    fieldpaths: readonly string[] = [],
  ): SnapshotRecord {
    return this.m.tx(() => {
      const labels = labelsByPaths(
        `snapshot ${JSON.stringify(rec.name)}`,
        this.get(namespace, snapshotter, rec.name).labels,
        rec.labels,
        fieldpaths,
      );
      validateLabels(labels);
      this.m.run(
        "UPDATE snapshots SET labels = ?, updated = ? WHERE namespace = ? AND snapshotter = ? AND name = ?",
        labelsToJson(labels),
        now(),
        namespace,
        snapshotter,
        rec.name,
      );
      this.m.markMutation(true);
      return this.get(namespace, snapshotter, rec.name);
    });
  }

  /** Deletes record `name`; FailedPrecondition while children refer to it. */
  delete(namespace: string, snapshotter: string, name: string): SnapshotRecord {
    return this.m.tx(() => {
      const rec = this.get(namespace, snapshotter, name);
      if (
        this.m.get(
          "SELECT 1 FROM snapshots WHERE namespace = ? AND snapshotter = ? AND parent = ? LIMIT 1",
          namespace,
          snapshotter,
          name,
        )
      ) throw failedPrecondition(`cannot remove snapshot ${JSON.stringify(name)}: it has children`);
      this.m.run(
        "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND name = ?",
        namespace,
        snapshotter,
        name,
      );
      this.m.markMutation(true);
      return rec;
    });
  }

  /** Backend keys of `snapshotter` that some namespace uses. */
  backendKeys(snapshotter: string): Set<string> {
    return new Set(
      this.m.all<{ backend_key: string }>(
        "SELECT backend_key FROM snapshots WHERE snapshotter = ?",
        snapshotter,
      )
        .map((r) => r.backend_key),
    );
  }

  /** Names of snapshotters that have records. */
  snapshotters(): string[] {
    return this.m.all<{ snapshotter: string }>(
      "SELECT DISTINCT snapshotter FROM snapshots ORDER BY snapshotter",
    )
      .map((r) => r.snapshotter);
  }
}
