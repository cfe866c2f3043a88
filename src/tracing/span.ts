/**
 * Spans and the tracer that makes them. A process has at most one tracer
 * (set with {@link setTracer}); with none, or for a call whose trace is not
 * sampled, nothing here runs: no clock read, no span object. Context is
 * passed explicitly (a parent span in hand, or a traceparent in call
 * metadata), as containerd passes its context.Context: an implicit async
 * context would need node:async_hooks, which costs every process tens of
 * milliseconds to load.
 * @module
 */

import { FLAG_SAMPLED, parseTraceparent, type SpanContext } from "./traceparent.ts";

/** OTLP span kinds (the proto enum's numbers). */
export const SpanKind = { Internal: 1, Server: 2, Client: 3 } as const;
/** One of {@link SpanKind}'s values. */
export type SpanKindValue = typeof SpanKind[keyof typeof SpanKind];

/** An attribute value as OTLP carries it. */
export type AttrValue = string | number | boolean;

/** Where finished spans go (a batching exporter, a memory list). */
export interface SpanSink {
  /** Takes one finished span; never blocks and never throws. */
  add(span: Span): void;
  /** Sends what is queued; resolves when it went out (or failed). */
  flush(): Promise<void>;
}

/** Wall-clock time in ms since the epoch, with sub-millisecond precision. */
export function nowMs(): number {
  return performance.timeOrigin + performance.now();
}

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, "0"));
const RANDOM = new Uint8Array(24);

function hex(bytes: Uint8Array, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i++) s += HEX[bytes[i]];
  return s;
}

/** A new random 16-digit span id (never all zero). */
export function newSpanId(): string {
  crypto.getRandomValues(RANDOM.subarray(0, 8));
  RANDOM[7] |= 1;
  return hex(RANDOM, 0, 8);
}

/** A new random 32-digit trace id (never all zero). */
export function newTraceId(): string {
  crypto.getRandomValues(RANDOM.subarray(8, 24));
  RANDOM[23] |= 1;
  return hex(RANDOM, 8, 24);
}

/** One timed operation of a trace. */
export class Span implements SpanContext {
  readonly spanId: string = newSpanId();
  readonly flags = FLAG_SAMPLED;
  /** Start, ms since the epoch. */
  readonly start: number;
  /** End, ms since the epoch; 0 while the span is open. */
  end = 0;
  attributes: Record<string, AttrValue> | undefined;
  /** OTLP status: 0 unset, 1 ok, 2 error. */
  statusCode = 0;
  statusMessage = "";

  /** Use {@link Tracer} or {@link Span.child}; the constructor is theirs. */
  constructor(
    readonly tracer: Tracer,
    readonly name: string,
    readonly kind: SpanKindValue,
    readonly traceId: string,
    readonly parentSpanId: string | undefined,
    readonly state: string | undefined,
    start?: number,
  ) {
    this.start = start ?? nowMs();
  }

  /**
   * A span nested in this one (same trace, this span as its parent);
   * `start` backdates it (ms since the epoch), e.g. to the process start.
   */
  child(name: string, kind: SpanKindValue = SpanKind.Internal, start?: number): Span {
    return new Span(this.tracer, name, kind, this.traceId, this.spanId, this.state, start);
  }

  /** Sets an attribute; returns the span. */
  set(key: string, value: AttrValue): this {
    (this.attributes ??= {})[key] = value;
    return this;
  }

  /** Marks the span failed with the error's message. */
  fail(err: unknown): this {
    this.statusCode = 2;
    this.statusMessage = err instanceof Error ? err.message : String(err);
    return this;
  }

  /**
   * Ends the span (once; later calls are ignored) and hands it to the
   * tracer's sinks; `at` backdates the end (ms since the epoch).
   */
  finish(err?: unknown, at?: number): void {
    if (this.end !== 0) return;
    this.end = at ?? nowMs();
    if (err !== undefined) this.fail(err);
    this.tracer.record(this);
  }
}

/** Options of {@link Tracer}. */
export interface TracerOptions {
  /** The resource's service.name (e.g. "berth", "containerd-shim-berth-v2"). */
  service: string;
  /** Where every finished span goes. */
  sinks?: SpanSink[];
  /**
   * Share of new traces (calls that arrive with no traceparent) to record,
   * 0..1 (default 0). Calls with a traceparent follow its sampled flag, as
   * OpenTelemetry's parent-based sampler does.
   */
  ratio?: number;
  /** Extra sinks per span by its trace state (see route.ts); undefined when none. */
  route?: (span: Span) => SpanSink | undefined;
}

/** Makes spans for this process and sends finished ones to its sinks. */
export class Tracer {
  readonly service: string;
  readonly ratio: number;
  readonly sinks: SpanSink[];
  #route: ((span: Span) => SpanSink | undefined) | undefined;

  /** A tracer; see {@link TracerOptions}. */
  constructor(opts: TracerOptions) {
    this.service = opts.service;
    this.sinks = opts.sinks ?? [];
    this.ratio = Math.min(1, Math.max(0, opts.ratio ?? 0));
    this.#route = opts.route;
  }

  /**
   * The span of a call this process serves: a child of the caller's span
   * when `traceparent` is valid (recorded only if the caller sampled it),
   * else the root of a new trace when the ratio picks it.
   */
  incoming(
    name: string,
    traceparent: string | undefined,
    tracestate?: string,
    kind: SpanKindValue = SpanKind.Server,
  ): Span | undefined {
    const parent = parseTraceparent(traceparent, tracestate);
    if (parent === undefined) return this.root(name, kind);
    if ((parent.flags & FLAG_SAMPLED) === 0) return undefined;
    return new Span(this, name, kind, parent.traceId, parent.spanId, parent.state);
  }

  /** The root span of a new trace, if the sampling ratio picks it. */
  root(name: string, kind: SpanKindValue = SpanKind.Internal): Span | undefined {
    if (this.ratio <= 0) return undefined;
    const traceId = newTraceId();
    // The ratio sampler's rule: the trace id's low bits below ratio * their range.
    if (this.ratio < 1 && parseInt(traceId.slice(19), 16) >= this.ratio * 0x10000000000000) {
      return undefined;
    }
    return new Span(this, name, kind, traceId, undefined, undefined);
  }

  /**
   * The root span of a new trace that is recorded whatever the ratio
   * (`berth trace`); `start` backdates it (ms since the epoch).
   */
  forced(name: string, state?: string, start?: number): Span {
    return new Span(this, name, SpanKind.Internal, newTraceId(), undefined, state, start);
  }

  /** Hands a finished span to every sink (called by {@link Span.finish}). */
  record(span: Span): void {
    for (const s of this.sinks) s.add(span);
    const extra = this.#route?.(span);
    if (extra !== undefined) extra.add(span);
  }

  /** Sends whatever the sinks still queue. */
  async flush(): Promise<void> {
    await Promise.all(this.sinks.map((s) => s.flush()));
  }
}

let active: Tracer | undefined;
const flushers = new Set<() => Promise<void>>();

/** This process's tracer, or undefined when tracing is off (the common case). */
export function tracer(): Tracer | undefined {
  return active;
}

/** Installs (or, with undefined, removes) this process's tracer. */
export function setTracer(t: Tracer | undefined): void {
  active = t;
}

/** Registers something to flush at exit (route sinks); returns its removal. */
export function onFlush(f: () => Promise<void>): () => void {
  flushers.add(f);
  return () => flushers.delete(f);
}

/**
 * Sends every span still queued in this process, waiting at most
 * `timeoutMs`: called before a process exits so its last spans are not lost.
 */
export async function flushTracing(timeoutMs = 2000): Promise<void> {
  const t = active;
  if (t === undefined && flushers.size === 0) return;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const all = Promise.all([t?.flush(), ...[...flushers].map((f) => f())]).then(() => {});
  await Promise.race([all, new Promise<void>((r) => timer = setTimeout(r, timeoutMs))]);
  clearTimeout(timer);
}

/**
 * Runs `fn` inside a child span of `parent` named `name`, ending it when
 * `fn` settles (failed if it throws). With no parent it is just `fn()`.
 */
export async function withSpan<T>(
  parent: Span | undefined,
  name: string,
  fn: (span: Span | undefined) => Promise<T> | T,
): Promise<T> {
  if (parent === undefined) return await fn(undefined);
  const s = parent.child(name);
  try {
    const out = await fn(s);
    s.finish();
    return out;
  } catch (err) {
    s.finish(err);
    throw err;
  }
}
