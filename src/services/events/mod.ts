/**
 * The Events service over the in-process exchange: Publish (stamped here,
 * in the caller's namespace), Forward (envelopes stamped elsewhere, as
 * shims send them), and Subscribe (a stream filtered with containerd's
 * filter language). On ttrpc it also serves the
 * `containerd.services.events.ttrpc.v1.Events` Forward that shims call.
 * @module
 */

import type { Any, Timestamp } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../../errdefs/mod.ts";
import type { Envelope, Exchange } from "../../events/mod.ts";
import { Events as TTRPCEvents } from "../../gen/containerd/services/events/ttrpc/v1/events_pb.ts";
import { Events } from "../../gen/containerd/services/events/v1/events_pb.ts";
import type { Registration } from "../../plugin/mod.ts";
import { namespaceOf } from "../../namespaces/mod.ts";
import type { RPCService } from "../mod.ts";

/** An envelope as either Events API sends it. */
interface EnvelopeMessage {
  timestamp?: Timestamp;
  namespace: string;
  topic: string;
  event?: Any;
}

function fromProto(env: EnvelopeMessage | undefined): Envelope {
  if (env === undefined) throw invalidArgument("forward: the envelope is required");
  if (env.event === undefined) throw invalidArgument("forward: the envelope has no event");
  return {
    timestamp: env.timestamp ?? { $typeName: "google.protobuf.Timestamp", seconds: 0n, nanos: 0 },
    namespace: env.namespace,
    topic: env.topic,
    event: env.event,
  };
}

/** The Events services on `exchange`. */
export function eventsService(exchange: Exchange): RPCService {
  const forward = (req: { envelope?: EnvelopeMessage }) => {
    exchange.forward(fromProto(req.envelope));
    return {};
  };
  const impl = {
    publish: (req: { topic: string; event?: Any }, ctx: Parameters<typeof namespaceOf>[0]) => {
      if (req.event === undefined) throw invalidArgument("publish: the event is required");
      exchange.publishAny(namespaceOf(ctx) ?? "", req.topic, req.event);
      return {};
    },
    forward,
    // Subscribed as the call arrives (not when the stream is first read), so
    // nothing published after the request is missed; bad filters fail the call.
    subscribe: (req: { filters: string[] }, ctx: { signal: AbortSignal }) =>
      exchange.subscribe(req.filters, ctx.signal),
  };
  return {
    registerOn(server, transport) {
      server.register(Events, impl);
      // What shims call to hand their task events to the daemon.
      if (transport === "ttrpc") server.register(TTRPCEvents, { forward });
    },
  };
}

/** The plugin serving it: io.containerd.grpc.v1.events. */
export const eventsPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "events",
  requires: ["io.containerd.event.v1"],
  init: (ctx) => eventsService(ctx.first<Exchange>("io.containerd.event.v1")),
};
