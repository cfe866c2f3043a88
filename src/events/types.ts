/**
 * The event vocabulary: containerd's topics, the registry of every event
 * type it publishes, and how an event is packed in an Any. Used by the
 * daemon's exchange, the shim's publisher and the client's `events`.
 *
 * @module
 */

import {
  create,
  createRegistry,
  type DescMessage,
  type MessageInitShape,
  type Registry,
  toBinary,
} from "@bufbuild/protobuf";
import { type Any, AnySchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { file_containerd_events_container } from "../gen/containerd/events/container_pb.ts";
import { file_containerd_events_content } from "../gen/containerd/events/content_pb.ts";
import { file_containerd_events_image } from "../gen/containerd/events/image_pb.ts";
import { file_containerd_events_namespace } from "../gen/containerd/events/namespace_pb.ts";
import { file_containerd_events_snapshot } from "../gen/containerd/events/snapshot_pb.ts";
import { file_containerd_events_task } from "../gen/containerd/events/task_pb.ts";

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

/** Every event type containerd publishes, to decode an envelope's Any for filtering. */
export const EVENT_TYPES: Registry = createRegistry(
  file_containerd_events_container,
  file_containerd_events_content,
  file_containerd_events_image,
  file_containerd_events_namespace,
  file_containerd_events_snapshot,
  file_containerd_events_task,
);

/** One event as it travels: when, in which namespace, on which topic, and what. */
export interface Envelope {
  timestamp: Timestamp;
  namespace: string;
  /** e.g. "/containers/create". */
  topic: string;
  /** The event message; its type URL is the message's full name, as containerd writes it. */
  event: Any;
}

/**
 * Packs a message (or an init object for one) in an Any the way containerd's
 * typeurl does: the type URL is the bare message name
 * ("containerd.events.TaskExit"), no "type.googleapis.com/" prefix.
 */
export function packEvent<D extends DescMessage>(schema: D, init: MessageInitShape<D>): Any {
  return create(AnySchema, {
    typeUrl: schema.typeName,
    value: toBinary(schema, create(schema, init)),
  });
}
