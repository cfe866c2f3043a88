/**
 * The Containers service over the metadata store: container records
 * (create, get, list with filters, list as a stream, update with field
 * masks, delete), publishing containerd's container events.
 * @module
 */

import { create } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../../errdefs/mod.ts";
import { type Exchange, Topic } from "../../events/mod.ts";
import {
  ContainerCreateSchema,
  ContainerDeleteSchema,
  ContainerUpdateSchema,
} from "../../gen/containerd/events/container_pb.ts";
import {
  type Container as ContainerProto,
  Containers,
  ContainerSchema,
} from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import type { AnyValue, Container, Metadata } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { maskPaths, type RPCService, rpcService, toTimestamp } from "../mod.ts";

function anyToProto(a: AnyValue): Any {
  return { $typeName: "google.protobuf.Any", typeUrl: a.typeUrl, value: a.value };
}

function anyFromProto(a: Any | undefined): AnyValue | undefined {
  return a === undefined ? undefined : { typeUrl: a.typeUrl, value: a.value };
}

/** A stored container as containerd's Container message. */
export function containerToProto(c: Container): ContainerProto {
  const extensions: Record<string, Any> = {};
  for (const [k, v] of Object.entries(c.extensions)) extensions[k] = anyToProto(v);
  return create(ContainerSchema, {
    id: c.id,
    labels: c.labels,
    image: c.image,
    runtime: { name: c.runtime.name, options: c.runtime.options && anyToProto(c.runtime.options) },
    spec: anyToProto(c.spec),
    snapshotter: c.snapshotter,
    snapshotKey: c.snapshotKey,
    createdAt: toTimestamp(c.createdAt),
    updatedAt: toTimestamp(c.updatedAt),
    extensions,
  });
}

/** The fields of a Container message the store takes (timestamps are the store's). */
export function containerFromProto(
  p: ContainerProto,
): Omit<Container, "createdAt" | "updatedAt" | "sandbox"> {
  const extensions: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(p.extensions)) extensions[k] = anyFromProto(v)!;
  return {
    id: p.id,
    labels: p.labels,
    image: p.image,
    runtime: {
      name: p.runtime?.name ?? "",
      ...(p.runtime?.options ? { options: anyFromProto(p.runtime.options) } : {}),
    },
    spec: anyFromProto(p.spec) ?? { typeUrl: "", value: new Uint8Array() },
    snapshotter: p.snapshotter,
    snapshotKey: p.snapshotKey,
    extensions,
  };
}

/** Containers answered by Get, kept until anything in the metadata changes. */
const GET_CACHE_ENTRIES = 1024;

/** The Containers service on `md`, publishing to `events`. */
export function containersService(md: Metadata, events: Exchange): RPCService {
  const list = (filters: string[], ns: string) =>
    md.containers.list(ns, filters).map(containerToProto);
  // Clients look the same container up again and again (every task command
  // does): the answer is kept as built, and any committed change to the
  // metadata, whatever it is, drops them all. The messages are only encoded,
  // never changed.
  const got = new Map<string, ContainerProto>();
  md.db.onMutation(() => got.clear());
  return rpcService(Containers, {
    get: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      const key = `${ns}\u0000${req.id}`;
      let container = got.get(key);
      if (container === undefined) {
        container = containerToProto(md.containers.get(ns, req.id));
        if (got.size >= GET_CACHE_ENTRIES) got.clear();
        got.set(key, container);
      }
      return { container };
    },
    list: (req, ctx) => ({ containers: list(req.filters, namespaceRequired(ctx)) }),
    async *listStream(req, ctx) {
      for (const container of list(req.filters, namespaceRequired(ctx))) yield { container };
    },
    create: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      if (req.container === undefined) {
        throw invalidArgument("container is required in the request");
      }
      const c = md.containers.create(ns, containerFromProto(req.container));
      events.publish(
        ns,
        Topic.ContainerCreate,
        ContainerCreateSchema,
        {
          id: c.id,
          image: c.image,
          runtime: {
            name: c.runtime.name,
            options: c.runtime.options && anyToProto(c.runtime.options),
          },
        },
      );
      return { container: containerToProto(c) };
    },
    update: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      if (req.container === undefined || req.container.id === "") {
        throw invalidArgument("Container.ID required");
      }
      const c = md.containers.update(
        ns,
        containerFromProto(req.container),
        maskPaths(req.updateMask),
      );
      events.publish(
        ns,
        Topic.ContainerUpdate,
        ContainerUpdateSchema,
        {
          id: c.id,
          image: c.image,
          labels: c.labels,
          snapshotKey: c.snapshotKey,
        },
      );
      return { container: containerToProto(c) };
    },
    delete: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      md.containers.delete(ns, req.id);
      events.publish(
        ns,
        Topic.ContainerDelete,
        ContainerDeleteSchema,
        { id: req.id },
      );
      return {};
    },
  });
}

/** The plugin serving it: io.containerd.grpc.v1.containers. */
export const containersPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "containers",
  requires: ["io.containerd.metadata.v1", "io.containerd.event.v1"],
  init: (ctx) =>
    containersService(
      ctx.first<Metadata>("io.containerd.metadata.v1"),
      ctx.first<Exchange>("io.containerd.event.v1"),
    ),
};
