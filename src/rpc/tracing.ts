/**
 * The server side of tracing, shared by both transports: a call's span
 * opens from the caller's `traceparent` metadata (or as a new trace when
 * the tracer's ratio picks it) and ends with the call's status. Only asked
 * when the process has a tracer; an unsampled call gets no span.
 * @module
 */

import { Code, codeName } from "../errdefs/mod.ts";
import { type Span, TRACEPARENT, type Tracer, TRACESTATE } from "../tracing/mod.ts";
import type { Metadata } from "./context.ts";

/** The span of a call to service/method, or undefined when it is not traced. */
export function callSpan(
  t: Tracer,
  service: string,
  method: string,
  md: Metadata,
): Span | undefined {
  const parent = md.get(TRACEPARENT);
  // The common case (no caller context, no sampling of new traces) allocates nothing.
  if (parent === undefined && t.ratio <= 0) return undefined;
  const state = parent === undefined ? undefined : md.get(TRACESTATE);
  const span = t.incoming(`${service}/${method}`, parent?.[0], state?.join(","));
  return span?.set("rpc.service", service).set("rpc.method", method);
}

/** Ends a call's span with its status code (an error status for anything but OK). */
export function endCallSpan(span: Span, code: Code): void {
  if (code !== Code.OK) {
    span.statusCode = 2;
    span.statusMessage = codeName(code);
  }
  span.set("rpc.grpc.status_code", code);
  span.finish();
}
