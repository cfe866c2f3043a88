/**
 * berth's garbage collector: marks what images, containers, leases and
 * gc.root labels keep alive in the metadata, removes every other record in
 * the same transaction, then frees the blobs and backend snapshots that no
 * namespace refers to any more.
 *
 * @module
 */

import type { ContentStore } from "../content/mod.ts";
import { log } from "../log/mod.ts";
import {
  LABEL_GC_EXPIRE,
  LABEL_GC_FLAT,
  LABEL_GC_REF_CONTENT,
  LABEL_GC_REF_SNAPSHOT,
  LABEL_GC_ROOT,
} from "../labels/mod.ts";
import type { Metadata } from "../metadata/mod.ts";
import type { SnapshotInfo, Snapshotter } from "../snapshots/mod.ts";
import { mark, type Node, nodeId } from "./tricolor.ts";

/** What one collection did. */
export interface CollectStats {
  /** Metadata records removed, by kind. */
  removed: { content: number; snapshots: number; leases: number; ingests: number };
  /** Blob files deleted from the content store. */
  blobsDeleted: number;
  /** Snapshots removed from backend snapshotters. */
  snapshotsRemoved: number;
  /** Wall time of the collection, in milliseconds. */
  elapsedMs: number;
}

/** What the collector works on. */
export interface CollectorOptions {
  metadata: Metadata;
  content: ContentStore;
  /** Backend snapshotters by name. */
  snapshotters: ReadonlyMap<string, Snapshotter> | Record<string, Snapshotter>;
  /** Quiet time after the last deletion before a scheduled collection runs (ms, default 1000). */
  delayMs?: number;
  /**
   * containerd's `pause_threshold`: the share of time collections may take.
   * After each one, the next waits at least average-collection-time /
   * threshold, so a stream of deletions (a container run after another) is
   * collected in batches instead of once per delete. 0: no pacing.
   */
  pauseThreshold?: number;
}

interface Labeled {
  labels: Record<string, string>;
}

/** Content and snapshot references named by gc.ref labels, as containerd reads them. */
export function labelRefs(namespace: string, labels: Record<string, string>): Node[] {
  const out: Node[] = [];
  for (const [k, v] of Object.entries(labels)) {
    if (k.startsWith(LABEL_GC_REF_CONTENT)) {
      const rest = k.slice(LABEL_GC_REF_CONTENT.length);
      // "containerd.io/gc.ref.content", ".<name>" or "/<name>"; other suffixes are other labels.
      if (rest === "" || rest[0] === "." || rest[0] === "/") {
        out.push({ type: "content", namespace, key: v });
      }
    } else if (k.startsWith(LABEL_GC_REF_SNAPSHOT)) {
      let snapshotter = k.slice(LABEL_GC_REF_SNAPSHOT.length);
      const slash = snapshotter.indexOf("/");
      if (slash >= 0) snapshotter = snapshotter.slice(0, slash);
      if (snapshotter) out.push({ type: "snapshot", namespace, key: `${snapshotter}/${v}` });
    }
  }
  return out;
}

function splitSnapshotKey(key: string): [string, string] {
  const i = key.indexOf("/");
  return [key.slice(0, i), key.slice(i + 1)];
}

/**
 * Garbage collection on demand ({@link collect}) and after deletions
 * ({@link scheduleCollect}, paced). Collections hold the metadata's
 * gcLock, so they never interleave with namespaced snapshot changes.
 */
export class GarbageCollector {
  private readonly md: Metadata;
  private readonly content: ContentStore;
  private readonly snapshotters: Map<string, Snapshotter>;
  private readonly delayMs: number;
  private readonly pauseThreshold: number;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** When the scheduled collection runs (epoch ms), while one is. */
  private timerAt = 0;
  /** End of the last collection (epoch ms), and the totals that pace the next. */
  private lastEnd = 0;
  private gcTimeMs = 0;
  private collections = 0;
  private running: Promise<CollectStats> | undefined;
  private closed = false;

  constructor(opts: CollectorOptions) {
    this.md = opts.metadata;
    this.content = opts.content;
    this.snapshotters = opts.snapshotters instanceof Map
      ? new Map(opts.snapshotters)
      : new Map(Object.entries(opts.snapshotters));
    this.delayMs = opts.delayMs ?? 1000;
    this.pauseThreshold = Math.min(Math.max(opts.pauseThreshold ?? 0, 0), 0.5);
  }

  /** Schedules a collection after every change that removed something. */
  watch(): void {
    this.md.db.onMutation((dirty) => {
      if (dirty) this.scheduleCollect();
    });
  }

  /**
   * Runs a collection `delayMs` from now, or later when pacing asks for a
   * pause since the last one. Calls while one is scheduled keep the earlier
   * time, as containerd's scheduler does; errors are logged.
   */
  scheduleCollect(delayMs = this.delayMs): void {
    if (this.closed) return;
    const at = Math.max(Date.now() + delayMs, this.lastEnd + this.pacingMs());
    if (this.timer !== undefined) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.collect().catch((err) => log.error("garbage collection failed", { error: String(err) }));
    }, at - Date.now());
  }

  /** When the scheduled collection will run (epoch ms), or undefined when none is scheduled. */
  get scheduledAt(): number | undefined {
    return this.timer === undefined ? undefined : this.timerAt;
  }

  /** The pause after a collection: average collection time / threshold, less the collection itself. */
  private pacingMs(): number {
    if (this.pauseThreshold <= 0 || this.collections === 0) return 0;
    const avg = this.gcTimeMs / this.collections;
    return avg / this.pauseThreshold - avg;
  }

  /** Cancels a scheduled collection and waits for a running one. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    await this.running?.catch(() => {});
  }

  /** Collects now and reports what was removed. */
  collect(): Promise<CollectStats> {
    const p = this.md.db.gcLock.run(() => this.collectLocked());
    this.running = p;
    return p;
  }

  private async collectLocked(): Promise<CollectStats> {
    const start = performance.now();
    const removed = this.md.db.tx(() => this.sweepMetadata());
    const blobsDeleted = await this.sweepContent();
    let snapshotsRemoved = 0;
    for (const [name, sn] of this.snapshotters) {
      snapshotsRemoved += await this.sweepSnapshotter(name, sn);
    }
    const stats = { removed, blobsDeleted, snapshotsRemoved, elapsedMs: performance.now() - start };
    this.gcTimeMs += stats.elapsedMs;
    this.collections++;
    this.lastEnd = Date.now();
    log.debug("garbage collected", {
      content: removed.content,
      snapshots: removed.snapshots,
      leases: removed.leases,
      ingests: removed.ingests,
      blobs: blobsDeleted,
      backendSnapshots: snapshotsRemoved,
    });
    return stats;
  }

  // Mark and sweep of the records, in one synchronous transaction: no
  // other change can land between deciding and deleting.
  private sweepMetadata(): CollectStats["removed"] {
    const { db } = this.md;
    const namespaces = this.md.namespaces.list().map((n) => n.name);
    const roots: Node[] = [];
    const now = Date.now();
    for (const ns of namespaces) {
      for (const lease of this.md.leases.list(ns)) {
        const exp = lease.labels[LABEL_GC_EXPIRE];
        if (exp !== undefined) {
          const t = Date.parse(exp);
          if (isNaN(t)) {
            log.info("ignoring invalid lease expiration", { lease: lease.id, value: exp });
          } else if (t < now) continue; // expired: no longer a root, collected below
        }
        const flat = LABEL_GC_FLAT in lease.labels;
        roots.push({ type: "lease", namespace: ns, key: lease.id });
        for (const r of this.md.leases.listResources(ns, lease.id)) {
          if (r.type === "content") {
            roots.push({ type: flat ? "content-flat" : "content", namespace: ns, key: r.id });
          } else if (r.type === "ingests") roots.push({ type: "ingest", namespace: ns, key: r.id });
          else if (r.type.startsWith("snapshots/")) {
            const sn = r.type.slice("snapshots/".length);
            roots.push({
              type: flat ? "snapshot-flat" : "snapshot",
              namespace: ns,
              key: `${sn}/${r.id}`,
            });
          }
        }
      }
      for (const img of this.md.images.list(ns)) {
        roots.push(
          { type: "content", namespace: ns, key: img.target.digest },
          ...labelRefs(ns, img.labels),
        );
      }
      for (const ing of this.md.content.listIngests(ns)) {
        if (ing.expireAt && ing.expireAt.getTime() > now) {
          roots.push({ type: "ingest", namespace: ns, key: ing.ref });
        }
      }
      for (const c of this.md.content.list(ns)) {
        if (LABEL_GC_ROOT in c.labels) {
          roots.push({ type: "content", namespace: ns, key: c.digest });
        }
      }
      for (const c of this.md.containers.list(ns)) {
        if (c.snapshotter) {
          roots.push({ type: "snapshot", namespace: ns, key: `${c.snapshotter}/${c.snapshotKey}` });
        }
        roots.push(...labelRefs(ns, c.labels));
      }
      for (const sn of this.md.snapshots.snapshotters()) {
        for (const s of this.md.snapshots.list(ns, sn)) {
          if (LABEL_GC_ROOT in s.labels) {
            roots.push({ type: "snapshot", namespace: ns, key: `${sn}/${s.name}` });
          }
        }
      }
    }

    const labelsOf = (get: () => Labeled): Record<string, string> | undefined => {
      try {
        return get().labels;
      } catch {
        return undefined; // a reference to something that does not exist: a dead edge
      }
    };
    const refs = (n: Node): Node[] => {
      switch (n.type) {
        case "content": {
          const labels = labelsOf(() => this.md.content.info(n.namespace, n.key));
          return labels ? labelRefs(n.namespace, labels) : [];
        }
        case "snapshot":
        case "snapshot-flat": {
          const [sn, name] = splitSnapshotKey(n.key);
          let rec;
          try {
            rec = this.md.snapshots.get(n.namespace, sn, name);
          } catch {
            return [];
          }
          const out: Node[] = [];
          if (rec.parent) {
            out.push({ type: n.type, namespace: n.namespace, key: `${sn}/${rec.parent}` });
          }
          if (n.type === "snapshot") out.push(...labelRefs(n.namespace, rec.labels));
          return out;
        }
        case "ingest": {
          try {
            const ing = this.md.content.getIngest(n.namespace, n.key);
            return ing.expected
              ? [{ type: "content", namespace: n.namespace, key: ing.expected }]
              : [];
          } catch {
            return [];
          }
        }
        default:
          return [];
      }
    };
    const live = mark(roots, refs);
    const dead = (n: Node) => !live.has(nodeId(n));

    const removed = { content: 0, snapshots: 0, leases: 0, ingests: 0 };
    for (const ns of namespaces) {
      for (const lease of this.md.leases.list(ns)) {
        if (dead({ type: "lease", namespace: ns, key: lease.id })) {
          db.run("DELETE FROM leases WHERE namespace = ? AND id = ?", ns, lease.id);
          removed.leases++;
        }
      }
      for (const ing of this.md.content.listIngests(ns)) {
        if (dead({ type: "ingest", namespace: ns, key: ing.ref })) {
          db.run("DELETE FROM ingests WHERE namespace = ? AND ref = ?", ns, ing.ref);
          removed.ingests++;
        }
      }
      for (const c of this.md.content.list(ns)) {
        if (dead({ type: "content", namespace: ns, key: c.digest })) {
          db.run("DELETE FROM content WHERE namespace = ? AND digest = ?", ns, c.digest);
          removed.content++;
        }
      }
      for (const sn of this.md.snapshots.snapshotters()) {
        // Children before parents; a live child keeps its parent live, so
        // a dead snapshot never has a live child.
        for (const s of this.md.snapshots.list(ns, sn).reverse()) {
          if (dead({ type: "snapshot", namespace: ns, key: `${sn}/${s.name}` })) {
            db.run(
              "DELETE FROM snapshots WHERE namespace = ? AND snapshotter = ? AND name = ?",
              ns,
              sn,
              s.name,
            );
            removed.snapshots++;
          }
        }
      }
    }
    return removed;
  }

  // Blobs that no namespace records any more.
  private async sweepContent(): Promise<number> {
    const used = this.md.content.allDigests();
    const unused: string[] = [];
    await this.content.walk((info) => {
      if (!used.has(info.digest)) unused.push(info.digest);
    });
    let n = 0;
    for (const d of unused) {
      try {
        await this.content.delete(d);
        n++;
      } catch (err) {
        log.warn("failed to delete blob", { digest: d, error: String(err) });
      }
    }
    return n;
  }

  // Backend snapshots that no namespace record uses, leaves first.
  private async sweepSnapshotter(name: string, sn: Snapshotter): Promise<number> {
    const used = this.md.snapshots.backendKeys(name);
    let all: SnapshotInfo[] = await sn.list();
    let removed = 0;
    for (;;) {
      const parents = new Set(all.map((i) => i.parent).filter((p) => p));
      const leaves = all.filter((i) => !used.has(i.name) && !parents.has(i.name));
      if (leaves.length === 0) break;
      for (const leaf of leaves) {
        try {
          await sn.remove(leaf.name);
          removed++;
        } catch (err) {
          log.warn("failed to remove snapshot", {
            snapshotter: name,
            key: leaf.name,
            error: String(err),
          });
        }
      }
      const gone = new Set(leaves.map((l) => l.name));
      const before = all.length;
      all = all.filter((i) => !gone.has(i.name));
      if (all.length === before) break;
    }
    if (removed > 0) await sn.cleanup();
    return removed;
  }
}
