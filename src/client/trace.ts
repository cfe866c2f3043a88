/**
 * `berth trace COMMAND...` (or `berth --trace COMMAND...`): runs one
 * command as a new sampled trace and prints its span tree to stderr:
 * the client's own spans, and those the daemon, shims and runc
 * invocations send back to a receiver this process opens on a loopback
 * port (named in the request's tracestate, see src/tracing/route.ts).
 * Loaded only when asked for.
 * @module
 */

import {
  BatchSink,
  decodeRequest,
  encodeSpans,
  formatTree,
  MemorySink,
  nowMs,
  otlpHttpExporter,
  type ReceivedSpan,
  routeState,
  settingsFromEnv,
  SpanKind,
  type SpanSink,
  Tracer,
} from "../tracing/mod.ts";
import { startReceiver } from "../tracing/receiver.ts";
import type { Span } from "../tracing/mod.ts";

/** service.name of the client's spans. */
export const CLIENT_SERVICE = "berth-client";

/** One traced command: its root span, then {@link TraceSession.finish} for the tree. */
export interface TraceSession {
  /** The command's root span, backdated to the process start. */
  readonly root: Span;
  /**
   * Ends the root, waits (bounded) for the other processes' spans, stops
   * the receiver and returns every span of the trace.
   */
  finish(err?: unknown): Promise<ReceivedSpan[]>;
}

/** True when every client span has its callee's span (nothing more is coming for it). */
function complete(spans: readonly ReceivedSpan[]): boolean {
  const parents = new Set(spans.map((s) => s.parentSpanId));
  return spans.every((s) => s.kind !== SpanKind.Client || parents.has(s.spanId));
}

/**
 * Starts the trace of command `name`. With OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT
 * set, the client's spans are exported there too (the daemon and shims
 * export theirs as their config says).
 */
export async function startTrace(name: string): Promise<TraceSession> {
  const ready = nowMs();
  const settings = settingsFromEnv((k) => Deno.env.get(k), CLIENT_SERVICE);
  const receiver = await startReceiver();
  const mine = new MemorySink();
  const sinks: SpanSink[] = [mine];
  if (settings !== undefined && settings.url !== "") {
    sinks.push(new BatchSink(otlpHttpExporter(settings.url, settings.service)));
  }
  const t = new Tracer({ service: settings?.service ?? CLIENT_SERVICE, sinks });
  const root = t.forced(name, routeState(receiver.port), performance.timeOrigin);
  // What the process did before this line: runtime start, loading the bundle, parsing flags.
  root.child("client start-up", SpanKind.Internal, performance.timeOrigin).finish(undefined, ready);
  // Only under `berth trace`: the loopback receiver the other processes send their spans to.
  root.child("trace receiver start", SpanKind.Internal, ready).finish();
  return {
    root,
    async finish(err) {
      root.finish(err);
      await t.flush();
      const own = decodeRequest(JSON.parse(encodeSpans(t.service, mine.spans)));
      const all = () => [...own, ...receiver.spans.filter((s) => s.traceId === root.traceId)];
      await receiver.settle(250, 3000, () => complete(all()));
      await receiver.close();
      return all();
    },
  };
}

/** The printed form of a finished trace. */
export function traceReport(spans: readonly ReceivedSpan[]): string {
  const id = spans[0]?.traceId ?? "";
  return `trace ${id} (${spans.length} spans)\n${formatTree(spans)}`;
}
