/**
 * Filter adaptors for event envelopes: `namespace`, `topic`, and
 * `event.<field path>` into the decoded event, so that containerd's event
 * filters (`topic~="/tasks/"`, `event.container_id==c1`) work on berth's.
 *
 * @module
 */

import type { DescMessage, Message, Registry } from "@bufbuild/protobuf";
import { type Any, anyUnpack } from "@bufbuild/protobuf/wkt";
import type { Adaptor } from "../filters/mod.ts";
import { type Envelope, EVENT_TYPES } from "./types.ts";

/** Decodes an event Any when its type is known; undefined otherwise (or when malformed). */
export function decodeEvent(
  any: Any | undefined,
  registry: Registry = EVENT_TYPES,
): Message | undefined {
  if (any === undefined) return undefined;
  try {
    return anyUnpack(any, registry);
  } catch {
    return undefined;
  }
}

/**
 * Looks up a field path in a message by proto field names, the way
 * containerd's generated Field methods do: text fields by value (empty is
 * absent), maps by the rest of the path joined with ".", nested messages
 * (and Anys of known types) recursively.
 */
export function messageField(
  desc: DescMessage,
  msg: Message,
  path: readonly string[],
  registry: Registry = EVENT_TYPES,
): string | undefined {
  if (path.length === 0) return undefined;
  const field = desc.fields.find((f) => f.name === path[0]);
  if (field === undefined) return undefined;
  const value = (msg as unknown as Record<string, unknown>)[field.localName];
  switch (field.fieldKind) {
    case "scalar":
    case "enum": {
      if (path.length !== 1 || value === undefined || value === null) return undefined;
      const text = String(value);
      return text === "" ? undefined : text;
    }
    case "map": {
      if (path.length < 2) return undefined;
      const key = path.slice(1).join(".");
      const map = value as Record<string, unknown>;
      return Object.hasOwn(map, key) ? String(map[key]) : undefined;
    }
    case "message": {
      if (value === undefined) return undefined;
      if (field.message.typeName === "google.protobuf.Any") {
        return anyField(value as Any, path.slice(1), registry);
      }
      return messageField(field.message, value as Message, path.slice(1), registry);
    }
    default:
      return undefined; // lists: containerd's filters cannot address their elements either
  }
}

/** {@link messageField} inside an Any, when its type is in `registry`. */
export function anyField(
  any: Any | undefined,
  path: readonly string[],
  registry: Registry = EVENT_TYPES,
): string | undefined {
  const msg = decodeEvent(any, registry);
  if (msg === undefined) return undefined;
  const desc = registry.getMessage(msg.$typeName);
  return desc === undefined ? undefined : messageField(desc, msg, path, registry);
}

/** The filter adaptor of an envelope: namespace, topic, event.*. */
export function adaptEnvelope(env: Envelope): Adaptor {
  return (path) => {
    switch (path[0]) {
      case "namespace":
        return path.length === 1 && env.namespace !== "" ? env.namespace : undefined;
      case "topic":
        return path.length === 1 && env.topic !== "" ? env.topic : undefined;
      case "event":
        return anyField(env.event, path.slice(1)); // decoded only when a filter looks inside
    }
    return undefined;
  };
}
