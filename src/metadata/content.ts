/**
 * Which namespace owns which blob, with that namespace's labels for it,
 * and the ingests in flight. The bytes live in src/content.
 *
 * @module
 */

import { alreadyExists, invalidArgument, notFound } from "../errdefs/mod.ts";
import { adaptFields } from "../filters/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import { parseDigest } from "../content/mod.ts";
import {
  checkNamespace,
  KeyedTable,
  labeledFields,
  labelsByPaths,
  labelsToJson,
  now,
} from "./db.ts";
import type { LabeledRow, MetadataDB } from "./db.ts";

/** A blob as one namespace sees it. */
export interface ContentRecord {
  digest: string;
  size: number;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

/** An ingest in flight in a namespace. */
export interface IngestRecord {
  ref: string;
  /** Digest the finished blob should have, "" when unknown. */
  expected: string;
  /** After this time the ingest no longer protects itself from collection. */
  expireAt?: Date;
}

/** Options of operations that may attach what they create to a lease. */
export interface LeaseOption {
  /** Lease (in the same namespace) that should hold the new object. */
  lease?: string;
}

interface Row extends LabeledRow {
  digest: string;
  size: number;
}

function toRecord(r: Row): ContentRecord {
  return { digest: r.digest, size: r.size, ...labeledFields(r) };
}

/** The filter adaptor of content: digest, size, labels.*. */
export function adaptContent(c: ContentRecord) {
  return adaptFields({ digest: c.digest, size: c.size }, { labels: c.labels });
}

/** Adds `type`/`id` to `lease` inside the caller's transaction; NotFound when the lease does not exist. */
export function holdInLease(
  m: MetadataDB,
  namespace: string,
  lease: string | undefined,
  type: string,
  id: string,
): void {
  if (!lease) return;
  if (!m.get("SELECT 1 FROM leases WHERE namespace = ? AND id = ?", namespace, lease)) {
    throw notFound(`lease ${JSON.stringify(lease)}`);
  }
  m.run(
    "INSERT OR IGNORE INTO lease_resources (namespace, lease_id, type, id) VALUES (?, ?, ?, ?)",
    namespace,
    lease,
    type,
    id,
  );
}

/** Per-namespace content records and ingests. */
export class ContentMetadataStore {
  private readonly rows: KeyedTable<Row, ContentRecord>;

  constructor(private readonly m: MetadataDB) {
    this.rows = new KeyedTable(m, {
      table: "content",
      key: "digest",
      describe: (k) => `content ${k}`,
      to: toRecord,
      adapt: adaptContent,
    });
  }

  /** Records that `namespace` holds blob `digest`; AlreadyExists if it does. */
  add(
    namespace: string,
    rec: { digest: string; size: number; labels?: Record<string, string> },
    opts: LeaseOption = {},
  ): ContentRecord {
    parseDigest(rec.digest);
    if (!(rec.size >= 0)) throw invalidArgument(`invalid size ${rec.size}`);
    validateLabels(rec.labels);
    return this.m.tx(() => {
      this.m.ensureNamespace(namespace);
      if (
        this.m.get(
          "SELECT 1 FROM content WHERE namespace = ? AND digest = ?",
          namespace,
          rec.digest,
        )
      ) {
        throw alreadyExists(`content ${rec.digest}`);
      }
      const t = now();
      this.m.run(
        "INSERT INTO content (namespace, digest, size, labels, created, updated) VALUES (?, ?, ?, ?, ?, ?)",
        namespace,
        rec.digest,
        rec.size,
        labelsToJson(rec.labels),
        t,
        t,
      );
      holdInLease(this.m, namespace, opts.lease, "content", rec.digest);
      this.m.markMutation(false);
      return this.info(namespace, rec.digest);
    });
  }

  /**
   * When `namespace` holds `digest`, adds it to `lease` too and returns true:
   * a writer that finds its blob there already keeps it from a collection
   * for the rest of its lease, as containerd's does.
   */
  holdIfPresent(namespace: string, digest: string, lease: string | undefined): boolean {
    return this.m.tx(() => {
      if (
        !this.m.get("SELECT 1 FROM content WHERE namespace = ? AND digest = ?", namespace, digest)
      ) {
        return false;
      }
      holdInLease(this.m, namespace, lease, "content", digest);
      return true;
    });
  }

  /** The record of `digest` in `namespace`; NotFound if the namespace does not hold it. */
  info(namespace: string, digest: string): ContentRecord {
    return this.rows.get(namespace, digest);
  }

  /** Records of `namespace` passing `filters`, by digest. */
  list(namespace: string, filters?: readonly string[]): ContentRecord[] {
    return this.rows.list(namespace, filters);
  }

  /** Changes labels with field paths "labels" / "labels.<k>" (none: replace all). */
  update(
    namespace: string,
    rec: { digest: string; labels?: Record<string, string> },
    fieldpaths: readonly string[] = [],
  ): ContentRecord {
    return this.m.tx(() => {
      const labels = labelsByPaths(
        `content ${rec.digest}`,
        this.info(namespace, rec.digest).labels,
        rec.labels,
        fieldpaths,
      );
      validateLabels(labels);
      this.m.run(
        "UPDATE content SET labels = ?, updated = ? WHERE namespace = ? AND digest = ?",
        labelsToJson(labels),
        now(),
        namespace,
        rec.digest,
      );
      // Dropping a gc.ref label can orphan what it pointed at.
      this.m.markMutation(true);
      return this.info(namespace, rec.digest);
    });
  }

  /** Removes `namespace`'s hold on `digest`; the blob goes once no namespace holds it. */
  delete(namespace: string, digest: string): void {
    this.rows.delete(namespace, digest);
  }

  /** Records an ingest in flight (replacing an older record of the same ref). */
  addIngest(namespace: string, ing: IngestRecord, opts: LeaseOption = {}): void {
    if (!ing.ref) throw invalidArgument("ingest ref must not be empty");
    if (ing.expected) parseDigest(ing.expected);
    this.m.tx(() => {
      this.m.ensureNamespace(namespace);
      this.m.run(
        "INSERT OR REPLACE INTO ingests (namespace, ref, expected, expire_at) VALUES (?, ?, ?, ?)",
        namespace,
        ing.ref,
        ing.expected ?? "",
        ing.expireAt ? ing.expireAt.toISOString() : null,
      );
      holdInLease(this.m, namespace, opts.lease, "ingests", ing.ref);
      this.m.markMutation(false);
    });
  }

  /** The ingest `ref`; NotFound if absent. */
  getIngest(namespace: string, ref: string): IngestRecord {
    checkNamespace(namespace);
    const r = this.m.get<{ ref: string; expected: string; expire_at: string | null }>(
      "SELECT ref, expected, expire_at FROM ingests WHERE namespace = ? AND ref = ?",
      namespace,
      ref,
    );
    if (!r) throw notFound(`ingest ${JSON.stringify(ref)}`);
    return {
      ref: r.ref,
      expected: r.expected,
      ...(r.expire_at ? { expireAt: new Date(r.expire_at) } : {}),
    };
  }

  /** Ingests of `namespace`, by ref. */
  listIngests(namespace: string): IngestRecord[] {
    checkNamespace(namespace);
    return this.m.all<{ ref: string }>(
      "SELECT ref FROM ingests WHERE namespace = ? ORDER BY ref",
      namespace,
    )
      .map((r) => this.getIngest(namespace, r.ref));
  }

  /** Forgets ingest `ref` (after commit or abort); absent is fine. */
  removeIngest(namespace: string, ref: string): void {
    checkNamespace(namespace);
    this.m.tx(() => {
      if (
        this.m.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", namespace, ref).changes >
          0
      ) {
        this.m.markMutation(true);
      }
    });
  }

  /** Every digest some namespace holds. */
  allDigests(): Set<string> {
    return new Set(
      this.m.all<{ digest: string }>("SELECT DISTINCT digest FROM content").map((r) => r.digest),
    );
  }
}
