/**
 * W3C Trace Context headers: `traceparent` (version-traceid-parentid-flags)
 * and the `tracestate` list, as carried in gRPC and ttrpc metadata.
 * Parsing is strict where the spec says a header must be ignored
 * (bad lengths, upper-case hex, all-zero ids, version ff).
 * @module
 */

/** The propagated identity of a span: what a child needs to join its trace. */
export interface SpanContext {
  /** 32 lower-case hex digits, not all zero. */
  readonly traceId: string;
  /** 16 lower-case hex digits, not all zero. */
  readonly spanId: string;
  /** Trace flags; bit 0 is "sampled". */
  readonly flags: number;
  /** The `tracestate` header, passed on unchanged (undefined when absent). */
  readonly state?: string;
}

/** The metadata key of the parent span. */
export const TRACEPARENT = "traceparent";
/** The metadata key of the vendor trace state. */
export const TRACESTATE = "tracestate";
/** Flag bit 0 of traceparent: the caller records this trace. */
export const FLAG_SAMPLED = 1;

const ZERO_TRACE = "00000000000000000000000000000000";
const ZERO_SPAN = "0000000000000000";

function isLowerHex(s: string, from: number, to: number): boolean {
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    if (!((c >= 0x30 && c <= 0x39) || (c >= 0x61 && c <= 0x66))) return false;
  }
  return true;
}

/**
 * Parses a traceparent header; undefined for anything the spec says to
 * ignore. Versions above 00 are read as 00 when their first four fields
 * fit (the spec's forward compatibility); version ff is invalid.
 */
export function parseTraceparent(
  header: string | undefined,
  state?: string,
): SpanContext | undefined {
  if (header === undefined) return undefined;
  const h = header.trim();
  if (h.length < 55 || h[2] !== "-" || h[35] !== "-" || h[52] !== "-") return undefined;
  if (!isLowerHex(h, 0, 2) || !isLowerHex(h, 3, 35) || !isLowerHex(h, 36, 52)) return undefined;
  if (!isLowerHex(h, 53, 55)) return undefined;
  const version = h.slice(0, 2);
  if (version === "ff") return undefined;
  // Version 00 is exactly 55 characters; later versions may append fields after a dash.
  if (version === "00" ? h.length !== 55 : h.length > 55 && h[55] !== "-") return undefined;
  const traceId = h.slice(3, 35);
  const spanId = h.slice(36, 52);
  if (traceId === ZERO_TRACE || spanId === ZERO_SPAN) return undefined;
  const flags = parseInt(h.slice(53, 55), 16);
  const st = state?.trim();
  return st ? { traceId, spanId, flags, state: st.slice(0, 512) } : { traceId, spanId, flags };
}

/** Formats a version-00 traceparent header. */
export function formatTraceparent(c: SpanContext): string {
  return `00-${c.traceId}-${c.spanId}-${(c.flags & 0xff).toString(16).padStart(2, "0")}`;
}

/**
 * The value of one `key=value` member of a tracestate list, or undefined.
 * berth keeps its own member (`berth=`) there to name where a traced
 * request's spans are also sent (see route.ts).
 */
export function tracestateValue(state: string | undefined, key: string): string | undefined {
  if (state === undefined) return undefined;
  for (const member of state.split(",")) {
    const eq = member.indexOf("=");
    if (eq > 0 && member.slice(0, eq).trim() === key) return member.slice(eq + 1).trim();
  }
  return undefined;
}
