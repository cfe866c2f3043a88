/**
 * The Leases service over the metadata store: leases keep what they hold
 * (content, ingests, snapshots) from the garbage collector while a client
 * assembles something.
 * @module
 */

import { invalidArgument } from "../../errdefs/mod.ts";
import { Leases } from "../../gen/containerd/services/leases/v1/leases_pb.ts";
import type { Lease, Metadata } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { type Collector, type RPCService, rpcService, toTimestamp } from "../mod.ts";

function toProto(l: Lease) {
  return { id: l.id, labels: l.labels, createdAt: toTimestamp(l.createdAt) };
}

function resourceOf(r: { id: string; type: string } | undefined) {
  if (r === undefined) throw invalidArgument("lease resource is required");
  return { id: r.id, type: r.type };
}

/** The Leases service on `md`; `gc()` is the collector when one is loaded (for `sync` deletes). */
export function leasesService(md: Metadata, gc: () => Collector | undefined): RPCService {
  return rpcService(Leases, {
    create: (req, ctx) => ({
      lease: toProto(md.leases.create(namespaceRequired(ctx), req.id, req.labels)),
    }),
    list: (req, ctx) => ({
      leases: md.leases.list(namespaceRequired(ctx), req.filters).map(toProto),
    }),
    delete: async (req, ctx) => {
      md.leases.delete(namespaceRequired(ctx), req.id);
      if (req.sync) await gc()?.collect();
      return {};
    },
    addResource: (req, ctx) => {
      md.leases.addResource(namespaceRequired(ctx), req.id, resourceOf(req.resource));
      return {};
    },
    deleteResource: (req, ctx) => {
      md.leases.deleteResource(namespaceRequired(ctx), req.id, resourceOf(req.resource));
      return {};
    },
    listResources: (req, ctx) => ({
      resources: md.leases.listResources(namespaceRequired(ctx), req.id),
    }),
  });
}

/** The plugin serving it: io.containerd.grpc.v1.leases. */
export const leasesPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "leases",
  requires: ["io.containerd.metadata.v1"],
  init: (ctx) =>
    leasesService(
      ctx.first<Metadata>("io.containerd.metadata.v1"),
      () => ctx.all<Collector>("io.containerd.gc.v1").values().next().value,
    ),
};
