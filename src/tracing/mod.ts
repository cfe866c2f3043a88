/**
 * Tracing: spans across client -> daemon -> shim -> runc, the W3C
 * `traceparent` that carries them between processes in gRPC and ttrpc
 * metadata, and OTLP/HTTP JSON export (or a JSON-lines file). Loaded by
 * every berth process, so it imports nothing heavy; with no tracer
 * installed or an unsampled call, it costs no clock read and no allocation.
 *
 * @example
 * ```ts
 * setTracer(makeTracer(settingsFromConfig(cfg, "/run/berth/traces.jsonl")));
 * const span = tracer()?.incoming("containerd.task.v2.Task/Create", md.get("traceparent")?.[0]);
 * const runc = span?.child("runc create");
 * runc?.finish();
 * span?.finish();
 * ```
 * @module
 */

export {
  FLAG_SAMPLED,
  formatTraceparent,
  parseTraceparent,
  type SpanContext,
  TRACEPARENT,
  TRACESTATE,
  tracestateValue,
} from "./traceparent.ts";
export {
  type AttrValue,
  flushTracing,
  newSpanId,
  newTraceId,
  nowMs,
  onFlush,
  setTracer,
  Span,
  SpanKind,
  type SpanKindValue,
  type SpanSink,
  Tracer,
  tracer,
  type TracerOptions,
  withSpan,
} from "./span.ts";
export {
  type BatchExporter,
  type BatchOptions,
  BatchSink,
  fileExporter,
  MemorySink,
  otlpHttpExporter,
} from "./export.ts";
export { decodeRequest, encodeSpans, nanos, type ReceivedSpan, SCOPE } from "./otlp.ts";
export { ROUTE_KEY, routePort, routeSinks, routeState } from "./route.ts";
export {
  checkProtocol,
  ENV_FILE,
  makeTracer,
  OTLP_SECTION,
  PROTOCOL_JSON,
  settingsEnv,
  settingsFromConfig,
  settingsFromEnv,
  tracesUrl,
  TRACING_ENV_KEYS,
  TRACING_SECTION,
  type TracingConfig,
  type TracingSettings,
} from "./settings.ts";
export { buildTree, formatTree, msBetween, type SpanNode } from "./tree.ts";
