/**
 * berth's event bus: an in-process {@link Exchange} that services publish
 * to and subscribers read with containerd's filter language, envelopes
 * shaped as containerd's, and the topics containerd uses.
 *
 * @example
 * ```ts
 * import { Exchange, Topic } from "./mod.ts";
 * import { create } from "@bufbuild/protobuf";
 * import { NamespaceCreateSchema } from "../gen/containerd/events/namespace_pb.ts";
 * const events = new Exchange();
 * const sub = events.subscribe(['topic~="^/namespaces/"']);
 * events.publish("default", Topic.NamespaceCreate, NamespaceCreateSchema, create(NamespaceCreateSchema, { name: "x" }));
 * const { value } = await sub.next(); // value.topic === "/namespaces/create"
 * ```
 * @module
 */

export { adaptEnvelope, anyField, decodeEvent, EVENT_TYPES, messageField } from "./adapt.ts";
export {
  type Envelope,
  Exchange,
  type ExchangeOptions,
  packEvent,
  validateEnvelope,
  validateTopic,
} from "./exchange.ts";
export { publishMain, publishSocket } from "./publish.ts";

/** The topics containerd publishes on, by what happened. */
export const Topic = {
  NamespaceCreate: "/namespaces/create",
  NamespaceUpdate: "/namespaces/update",
  NamespaceDelete: "/namespaces/delete",
  ContainerCreate: "/containers/create",
  ContainerUpdate: "/containers/update",
  ContainerDelete: "/containers/delete",
  ImageCreate: "/images/create",
  ImageUpdate: "/images/update",
  ImageDelete: "/images/delete",
  SnapshotPrepare: "/snapshot/prepare",
  SnapshotCommit: "/snapshot/commit",
  SnapshotRemove: "/snapshot/remove",
  ContentDelete: "/content/delete",
  TaskCreate: "/tasks/create",
  TaskStart: "/tasks/start",
  TaskOOM: "/tasks/oom",
  TaskExit: "/tasks/exit",
  TaskDelete: "/tasks/delete",
  TaskExecAdded: "/tasks/exec-added",
  TaskExecStarted: "/tasks/exec-started",
  TaskPaused: "/tasks/paused",
  TaskResumed: "/tasks/resumed",
  TaskCheckpointed: "/tasks/checkpointed",
} as const;
