/**
 * The Namespaces service over the metadata store: create, get, list,
 * update (labels, with field masks) and delete (refused while the
 * namespace holds anything), publishing containerd's namespace events.
 * @module
 */

import { invalidArgument } from "../../errdefs/mod.ts";
import { type Exchange, Topic } from "../../events/mod.ts";
import { adaptFields, parseFilter } from "../../filters/mod.ts";
import {
  NamespaceCreateSchema,
  NamespaceDeleteSchema,
  NamespaceUpdateSchema,
} from "../../gen/containerd/events/namespace_pb.ts";
import { Namespaces } from "../../gen/containerd/services/namespaces/v1/namespaces_pb.ts";
import type { Metadata, Namespace } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { namespaceOf } from "../../namespaces/mod.ts";
import { maskPaths, type RPCService, rpcService } from "../mod.ts";

function toProto(n: Namespace) {
  return { name: n.name, labels: n.labels };
}

/** The Namespaces service on `md`, publishing to `events`. */
export function namespacesService(md: Metadata, events: Exchange): RPCService {
  return rpcService(Namespaces, {
    get: (req) => ({ namespace: toProto(md.namespaces.get(req.name)) }),
    list: (req) => {
      // containerd ignores this field; berth honours it (name, labels.*).
      const f = parseFilter(req.filter);
      const all = md.namespaces.list().filter((n) =>
        f.match(adaptFields({ name: n.name }, { labels: n.labels }))
      );
      return { namespaces: all.map(toProto) };
    },
    create: (req, ctx) => {
      if (req.namespace === undefined) {
        throw invalidArgument("namespace is required in the request");
      }
      const n = md.namespaces.create(req.namespace.name, req.namespace.labels);
      // containerd stamps the event with the caller's namespace; a caller
      // that sent none gets the new namespace's own name instead of an error.
      events.publish(
        namespaceOf(ctx) || n.name,
        Topic.NamespaceCreate,
        NamespaceCreateSchema,
        { name: n.name, labels: n.labels },
      );
      return { namespace: toProto(n) };
    },
    update: (req, ctx) => {
      if (req.namespace === undefined) {
        throw invalidArgument("namespace is required in the request");
      }
      const n = md.namespaces.update(
        req.namespace.name,
        req.namespace.labels,
        maskPaths(req.updateMask),
      );
      events.publish(
        namespaceOf(ctx) || n.name,
        Topic.NamespaceUpdate,
        NamespaceUpdateSchema,
        { name: n.name, labels: n.labels },
      );
      return { namespace: toProto(n) };
    },
    delete: (req) => {
      md.namespaces.delete(req.name);
      events.publish(
        req.name,
        Topic.NamespaceDelete,
        NamespaceDeleteSchema,
        { name: req.name },
      );
      return {};
    },
  });
}

/** The plugin serving it: io.containerd.grpc.v1.namespaces. */
export const namespacesPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "namespaces",
  requires: ["io.containerd.metadata.v1", "io.containerd.event.v1"],
  init: (ctx) =>
    namespacesService(
      ctx.first<Metadata>("io.containerd.metadata.v1"),
      ctx.first<Exchange>("io.containerd.event.v1"),
    ),
};
