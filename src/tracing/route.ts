/**
 * Per-trace destinations. `berth trace` asks that the spans of its one
 * request come back to it, wherever they are made: it listens on a
 * loopback port and puts `berth=<port>` in the request's tracestate, which
 * every hop passes on (W3C Trace Context keeps vendor members). Each
 * process then also sends that trace's spans to
 * http://127.0.0.1:<port>/v1/traces, flushed within a few ms. Only a
 * loopback port can be named, and only callers allowed on the daemon's or
 * shim's socket (root) can name one.
 * @module
 */

import { BatchSink, otlpHttpExporter } from "./export.ts";
import { onFlush, type Span, type SpanSink } from "./span.ts";
import { tracestateValue } from "./traceparent.ts";

/** berth's tracestate member key. */
export const ROUTE_KEY = "berth";
/** How many distinct routes a process keeps open at once. */
const MAX_ROUTES = 16;

/** The tracestate that routes a trace's spans to a receiver on loopback `port`. */
export function routeState(port: number): string {
  return `${ROUTE_KEY}=${port}`;
}

/** The loopback port a tracestate routes to, or undefined. */
export function routePort(state: string | undefined): number | undefined {
  const v = tracestateValue(state, ROUTE_KEY);
  if (v === undefined || !/^[0-9]{1,5}$/.test(v)) return undefined;
  const port = Number(v);
  return port > 0 && port < 65536 ? port : undefined;
}

/**
 * A tracer's `route`: the sink for spans whose trace state names a port
 * (one batching sink per port, the oldest closed beyond {@link MAX_ROUTES}).
 */
export function routeSinks(service: string, version = ""): (span: Span) => SpanSink | undefined {
  const sinks = new Map<number, BatchSink>();
  const unregister = new Map<number, () => void>();
  return (span) => {
    if (span.state === undefined) return undefined;
    const port = routePort(span.state);
    if (port === undefined) return undefined;
    let sink = sinks.get(port);
    if (sink === undefined) {
      if (sinks.size >= MAX_ROUTES) {
        const [oldest, old] = sinks.entries().next().value!;
        sinks.delete(oldest);
        unregister.get(oldest)?.();
        unregister.delete(oldest);
        old.flush();
      }
      const url = `http://127.0.0.1:${port}/v1/traces`;
      sink = new BatchSink(otlpHttpExporter(url, service, version), { delayMs: 5 });
      sinks.set(port, sink);
      const s = sink;
      unregister.set(port, onFlush(() => s.flush()));
    }
    return sink;
  };
}
