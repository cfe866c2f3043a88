/**
 * The Snapshots service over the namespaced snapshotters of the metadata
 * store: every request names its snapshotter; names are the namespace's
 * own, and what is created is held by the call's lease, if any. Publishes
 * containerd's snapshot events.
 * @module
 */

import { invalidArgument } from "../../errdefs/mod.ts";
import { type Exchange, Topic } from "../../events/mod.ts";
import {
  SnapshotCommitSchema,
  SnapshotPrepareSchema,
  SnapshotRemoveSchema,
} from "../../gen/containerd/events/snapshot_pb.ts";
import {
  type Info,
  Kind,
  Snapshots,
} from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Metadata, NamespacedSnapshotter } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import type { Kind as StoreKind, Mount, SnapshotInfo, Snapshotter } from "../../snapshots/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { leaseOf, maskPaths, type RPCService, rpcService, toTimestamp } from "../mod.ts";

const KINDS: Record<StoreKind, Kind> = {
  view: Kind.VIEW,
  active: Kind.ACTIVE,
  committed: Kind.COMMITTED,
};

/** A snapshot's metadata as containerd's Info message init. */
export function infoToProto(i: SnapshotInfo) {
  return {
    name: i.name,
    parent: i.parent,
    kind: KINDS[i.kind] ?? Kind.UNKNOWN,
    createdAt: toTimestamp(i.created),
    updatedAt: toTimestamp(i.updated),
    labels: i.labels,
  };
}

/** Mounts as containerd's Mount messages (the target is left to whoever mounts). */
export function mountsToProto(mounts: Mount[]) {
  return mounts.map((m) => ({ type: m.type, source: m.source, target: "", options: m.options }));
}

// containerd sends snapshot lists in blocks, so a large walk is not one huge message.
const LIST_BLOCK = 100;

/**
 * The Snapshots service on `md` over the backend snapshotters `backends`
 * (by name), publishing to `events`.
 */
export function snapshotsService(
  md: Metadata,
  backends: ReadonlyMap<string, Snapshotter>,
  events: Exchange,
): RPCService {
  const byName = new Map<string, NamespacedSnapshotter>();
  for (const [name, backend] of backends) byName.set(name, md.snapshotter(backend));
  const pick = (name: string): NamespacedSnapshotter => {
    if (name === "") throw invalidArgument("snapshotter argument missing");
    const sn = byName.get(name);
    if (sn === undefined) {
      throw invalidArgument(
        `snapshotter not loaded: ${name} (loaded: ${[...byName.keys()].join(", ") || "none"})`,
      );
    }
    return sn;
  };
  return rpcService(Snapshots, {
    prepare: async (req, ctx) => {
      const ns = namespaceRequired(ctx);
      const mounts = await pick(req.snapshotter).prepare(ns, req.key, req.parent, {
        labels: req.labels,
        lease: leaseOf(ctx),
      });
      events.publish(
        ns,
        Topic.SnapshotPrepare,
        SnapshotPrepareSchema,
        { key: req.key, parent: req.parent },
      );
      return { mounts: mountsToProto(mounts) };
    },
    view: async (req, ctx) => {
      const ns = namespaceRequired(ctx);
      const mounts = await pick(req.snapshotter).view(ns, req.key, req.parent, {
        labels: req.labels,
        lease: leaseOf(ctx),
      });
      return { mounts: mountsToProto(mounts) };
    },
    mounts: async (req, ctx) => ({
      mounts: mountsToProto(await pick(req.snapshotter).mounts(namespaceRequired(ctx), req.key)),
    }),
    commit: async (req, ctx) => {
      const ns = namespaceRequired(ctx);
      await pick(req.snapshotter).commit(ns, req.name, req.key, {
        labels: req.labels,
        lease: leaseOf(ctx),
      });
      events.publish(
        ns,
        Topic.SnapshotCommit,
        SnapshotCommitSchema,
        { key: req.key, name: req.name },
      );
      return {};
    },
    remove: async (req, ctx) => {
      const ns = namespaceRequired(ctx);
      await pick(req.snapshotter).remove(ns, req.key);
      events.publish(
        ns,
        Topic.SnapshotRemove,
        SnapshotRemoveSchema,
        { key: req.key },
      );
      return {};
    },
    stat: async (req, ctx) => ({
      info: infoToProto(await pick(req.snapshotter).stat(namespaceRequired(ctx), req.key)),
    }),
    update: async (req, ctx) => {
      if (req.info === undefined) throw invalidArgument("snapshot info is required");
      const info = await pick(req.snapshotter).update(
        namespaceRequired(ctx),
        { name: req.info.name, labels: req.info.labels },
        maskPaths(req.updateMask),
      );
      return { info: infoToProto(info) };
    },
    async *list(req, ctx) {
      const infos = await pick(req.snapshotter).list(namespaceRequired(ctx), req.filters);
      for (let i = 0; i < infos.length; i += LIST_BLOCK) {
        yield { info: infos.slice(i, i + LIST_BLOCK).map(infoToProto) as Info[] };
      }
    },
    usage: async (req, ctx) => {
      const u = await pick(req.snapshotter).usage(namespaceRequired(ctx), req.key);
      return { size: BigInt(u.size), inodes: BigInt(u.inodes) };
    },
    cleanup: async (req, ctx) => {
      namespaceRequired(ctx);
      // Directories no snapshot owns (left by a crash) go; records are the collector's.
      await pick(req.snapshotter).backend.cleanup();
      return {};
    },
  });
}

/** The plugin serving it: io.containerd.grpc.v1.snapshots. */
export const snapshotsPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "snapshots",
  requires: ["io.containerd.metadata.v1", "io.containerd.event.v1", "io.containerd.snapshotter.v1"],
  init: (ctx) =>
    snapshotsService(
      ctx.first<Metadata>("io.containerd.metadata.v1"),
      ctx.all<Snapshotter>("io.containerd.snapshotter.v1"),
      ctx.first<Exchange>("io.containerd.event.v1"),
    ),
};
