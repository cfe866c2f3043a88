/**
 * Garbage collection of content and snapshots, with containerd's rules.
 *
 * Roots: images (their target and gc.ref labels), containers (their
 * snapshot and gc.ref labels), unexpired leases (everything they hold;
 * only that with `containerd.io/gc.flat`), unexpired ingests, and content
 * or snapshots labelled `containerd.io/gc.root`. From there, content
 * labels `containerd.io/gc.ref.content[.<name>|/<name>]` and
 * `containerd.io/gc.ref.snapshot.<snapshotter>[/<name>]`, snapshot
 * parents and ingests' expected digests are followed. Every unreached
 * record is removed; then blobs and backend snapshots no namespace uses
 * are deleted.
 *
 * Anything that writes a blob and then records it must do both under
 * `metadata.db.gcLock`, so a collection cannot fall between the two.
 *
 * @example
 * ```ts
 * import { GarbageCollector } from "./mod.ts";
 * const gc = new GarbageCollector({ metadata, content, snapshotters: { overlayfs } });
 * gc.watch(); // collect shortly after deletions
 * const stats = await gc.collect(); // or on demand
 * await gc.close();
 * ```
 * @module
 */

export {
  type CollectorOptions,
  type CollectStats,
  GarbageCollector,
  labelRefs,
} from "./collector.ts";
export { mark, type Node, nodeId, type ResourceType } from "./tricolor.ts";
