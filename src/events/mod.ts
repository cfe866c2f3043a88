/**
 * berth's event bus: an in-process {@link Exchange} that services publish
 * to and subscribers read with containerd's filter language, envelopes
 * shaped as containerd's, and the topics containerd uses.
 *
 * @example
 * ```ts
 * import { Exchange, Topic } from "./mod.ts";
 * import { NamespaceCreateSchema } from "../gen/containerd/events/namespace_pb.ts";
 * const events = new Exchange();
 * const sub = events.subscribe(['topic~="^/namespaces/"']);
 * events.publish("default", Topic.NamespaceCreate, NamespaceCreateSchema, { name: "x" });
 * const { value } = await sub.next(); // value.topic === "/namespaces/create"
 * ```
 * @module
 */

export { adaptEnvelope, anyField, decodeEvent, messageField } from "./adapt.ts";
export { Exchange, type ExchangeOptions, validateEnvelope, validateTopic } from "./exchange.ts";
export { type Envelope, EVENT_TYPES, packEvent, Topic } from "./types.ts";
