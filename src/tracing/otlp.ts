/**
 * The OTLP/JSON encoding of spans (an ExportTraceServiceRequest as the
 * OpenTelemetry protocol's JSON mapping writes it: ids as hex, 64-bit
 * integers as decimal strings, enums as numbers), and its decoding for
 * berth's own receiver (`berth trace`, tests, the breakdown bench).
 * @module
 */

import type { AttrValue, Span } from "./span.ts";

/** Instrumentation scope name on every span berth exports. */
export const SCOPE = "berth";

/** Unix nanoseconds as OTLP/JSON writes a fixed64: a decimal string (microsecond precision). */
export function nanos(ms: number): string {
  return (BigInt(Math.round(ms * 1000)) * 1000n).toString();
}

function attrValue(v: AttrValue): Record<string, unknown> {
  if (typeof v === "string") return { stringValue: v };
  if (typeof v === "boolean") return { boolValue: v };
  return Number.isInteger(v) ? { intValue: String(v) } : { doubleValue: v };
}

function attrs(rec: Record<string, AttrValue>): Array<Record<string, unknown>> {
  return Object.entries(rec).map(([key, value]) => ({ key, value: attrValue(value) }));
}

/** Encodes finished spans of one service as an ExportTraceServiceRequest JSON text. */
export function encodeSpans(service: string, spans: readonly Span[], version = ""): string {
  return JSON.stringify({
    resourceSpans: [{
      resource: { attributes: attrs({ "service.name": service }) },
      scopeSpans: [{
        scope: { name: SCOPE, version },
        spans: spans.map((s) => ({
          traceId: s.traceId,
          spanId: s.spanId,
          ...(s.state === undefined ? {} : { traceState: s.state }),
          ...(s.parentSpanId === undefined ? {} : { parentSpanId: s.parentSpanId }),
          flags: s.flags,
          name: s.name,
          kind: s.kind,
          startTimeUnixNano: nanos(s.start),
          endTimeUnixNano: nanos(s.end),
          ...(s.attributes === undefined ? {} : { attributes: attrs(s.attributes) }),
          status: s.statusCode === 2
            ? { code: 2, message: s.statusMessage }
            : { code: s.statusCode },
        })),
      }],
    }],
  });
}

/** A span as received: flattened out of its resource and scope. */
export interface ReceivedSpan {
  /** The resource's service.name. */
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  /** Unix nanoseconds. */
  start: bigint;
  end: bigint;
  attributes: Record<string, unknown>;
  status: { code: number; message?: string };
}

function plainValue(v: Record<string, unknown> | undefined): unknown {
  if (v === undefined) return undefined;
  if ("stringValue" in v) return v.stringValue;
  if ("intValue" in v) return Number(v.intValue);
  if ("doubleValue" in v) return v.doubleValue;
  if ("boolValue" in v) return v.boolValue;
  return v;
}

function plainAttrs(list: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (!Array.isArray(list)) return out;
  for (const a of list as Array<{ key: string; value?: Record<string, unknown> }>) {
    out[a.key] = plainValue(a.value);
  }
  return out;
}

/**
 * Flattens an ExportTraceServiceRequest (parsed JSON) into spans; throws a
 * TypeError naming what is malformed, so a receiver can answer 400.
 */
export function decodeRequest(body: unknown): ReceivedSpan[] {
  const rs = (body as { resourceSpans?: unknown })?.resourceSpans;
  if (!Array.isArray(rs)) throw new TypeError("resourceSpans is not a list");
  const out: ReceivedSpan[] = [];
  for (const r of rs) {
    const service = String(plainAttrs(r?.resource?.attributes)["service.name"] ?? "");
    for (const ss of r?.scopeSpans ?? []) {
      for (const s of ss?.spans ?? []) {
        if (typeof s?.traceId !== "string" || typeof s?.spanId !== "string") {
          throw new TypeError("a span has no traceId or spanId");
        }
        out.push({
          service,
          traceId: s.traceId,
          spanId: s.spanId,
          parentSpanId: s.parentSpanId ?? "",
          name: String(s.name ?? ""),
          kind: Number(s.kind ?? 0),
          start: BigInt(s.startTimeUnixNano ?? 0),
          end: BigInt(s.endTimeUnixNano ?? 0),
          attributes: plainAttrs(s.attributes),
          status: s.status ?? { code: 0 },
        });
      }
    }
  }
  return out;
}
