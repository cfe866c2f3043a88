/**
 * Namespaces: the top-level partition of all metadata.
 *
 * @module
 */

import { alreadyExists, failedPrecondition } from "../errdefs/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import { labeledFields, labelsByPaths, labelsToJson, now } from "./db.ts";
import type { LabeledRow, MetadataDB } from "./db.ts";

/** A namespace and its labels. */
export interface Namespace {
  name: string;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

interface Row extends LabeledRow {
  name: string;
}

function toNamespace(r: Row): Namespace {
  return { name: r.name, ...labeledFields(r) };
}

/** Creates, reads, relabels and deletes namespaces. */
export class NamespaceStore {
  constructor(private readonly m: MetadataDB) {}

  /** Creates `name`; AlreadyExists if it exists. */
  create(name: string, labels: Record<string, string> = {}): Namespace {
    validateIdentifier(name, "namespace");
    validateLabels(labels);
    return this.m.tx(() => {
      if (this.m.get("SELECT 1 FROM namespaces WHERE name = ?", name)) {
        throw alreadyExists(`namespace ${JSON.stringify(name)}`);
      }
      const t = now();
      this.m.run(
        "INSERT INTO namespaces (name, labels, created, updated) VALUES (?, ?, ?, ?)",
        name,
        labelsToJson(labels),
        t,
        t,
      );
      this.m.markMutation(false);
      return this.get(name);
    });
  }

  /** The namespace `name`; NotFound if absent. */
  get(name: string): Namespace {
    validateIdentifier(name, "namespace");
    return toNamespace(
      this.m.mustGet<Row>(
        `namespace ${JSON.stringify(name)}`,
        "SELECT * FROM namespaces WHERE name = ?",
        name,
      ),
    );
  }

  /** All namespaces, by name. */
  list(): Namespace[] {
    return this.m.all<Row>("SELECT * FROM namespaces ORDER BY name").map(toNamespace);
  }

  /**
   * Changes labels with field paths "labels" or "labels.<key>" (none:
   * replace all). Only labels of a namespace can change.
   */
  update(
    name: string,
    labels: Record<string, string>,
    fieldpaths: readonly string[] = [],
  ): Namespace {
    return this.m.tx(() => {
      const next = labelsByPaths(
        `namespace ${JSON.stringify(name)}`,
        this.get(name).labels,
        labels,
        fieldpaths,
      );
      validateLabels(next);
      this.m.run(
        "UPDATE namespaces SET labels = ?, updated = ? WHERE name = ?",
        labelsToJson(next),
        now(),
        name,
      );
      this.m.markMutation(false);
      return this.get(name);
    });
  }

  /** Sets (or with "" removes) one label. */
  setLabel(name: string, key: string, value: string): Namespace {
    return this.update(name, { [key]: value }, [`labels.${key}`]);
  }

  /**
   * Deletes `name`. FailedPrecondition while it holds images, blobs,
   * containers or snapshots (its leases and ingests go with it).
   */
  delete(name: string): void {
    this.m.tx(() => {
      this.get(name);
      const left: string[] = [];
      if (this.m.get("SELECT 1 FROM images WHERE namespace = ? LIMIT 1", name)) left.push("images");
      if (this.m.get("SELECT 1 FROM content WHERE namespace = ? LIMIT 1", name)) left.push("blobs");
      if (this.m.get("SELECT 1 FROM containers WHERE namespace = ? LIMIT 1", name)) {
        left.push("containers");
      }
      for (
        const r of this.m.all<{ snapshotter: string }>(
          "SELECT DISTINCT snapshotter FROM snapshots WHERE namespace = ? ORDER BY snapshotter",
          name,
        )
      ) left.push(`snapshots on ${JSON.stringify(r.snapshotter)} snapshotter`);
      if (left.length > 0) {
        throw failedPrecondition(
          `namespace ${JSON.stringify(name)} must be empty, but it still has ${left.join(", ")}`,
        );
      }
      this.m.run("DELETE FROM namespaces WHERE name = ?", name);
      this.m.markMutation(true);
    });
  }
}
