/**
 * The ttrpc client: many calls in flight on one connection, each with its
 * own deadline and cancellation. A broken or closed connection fails every
 * pending call at once with Unavailable, so nothing waits forever.
 *
 * @example
 * ```ts
 * const client = await connect("/run/containerd/s/abc");
 * const task = serviceClient(client, Task);
 * const st = await task.state({ id: "c1" }, { timeoutMs: 2000, metadata: { [TTRPC_NAMESPACE_KEY]: "default" } });
 * client.close();
 * ```
 * @module
 */

import { type DescMessage, fromBinary } from "@bufbuild/protobuf";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Flag, FrameWriter, MAX_MESSAGE_LENGTH, MessageType, readFrames } from "./channel.ts";
import { errorFromStatus, MessageQueue, type MetadataInit, metadataPairs } from "../rpc/mod.ts";
import { decodeResponse, encodeMetadata, requestPrefix, writeRequest } from "./envelope.ts";
import { concatBytes } from "../bytes/mod.ts";
import { formatTraceparent, type Span, SpanKind, TRACEPARENT, TRACESTATE } from "../tracing/mod.ts";

/** @internal `md` plus the traceparent (and tracestate) of `span`, for the callee. */
export function withTraceMetadata(span: Span, md: Uint8Array | undefined): Uint8Array {
  const pairs: Array<[string, string]> = [[TRACEPARENT, formatTraceparent(span)]];
  if (span.state !== undefined) pairs.push([TRACESTATE, span.state]);
  const extra = encodeMetadata(pairs);
  return md === undefined ? extra : concatBytes(md, extra);
}

/**
 * @internal Makes the client span of a unary call `name` under `parent`,
 * runs `call` with metadata that carries it, and ends it when the call settles.
 */
export function tracedUnary(
  parent: Span,
  name: string,
  md: Uint8Array | undefined,
  call: (md: Uint8Array) => Promise<unknown>,
): Promise<unknown> {
  const span = parent.child(name, SpanKind.Client);
  return call(withTraceMetadata(span, md)).then((v) => {
    span.finish();
    return v;
  }, (err) => {
    span.finish(err);
    throw err;
  });
}

/** Per-call options. */
export interface CallOptions {
  /** Deadline relative to now; sent to the server and enforced locally (DeadlineExceeded). */
  timeoutMs?: number;
  /** Aborting it fails the call with Canceled (the server is not told; ttrpc has no cancel frame). */
  signal?: AbortSignal;
  /** Metadata sent with the call, e.g. `{ "containerd-namespace-ttrpc": "default" }`. */
  metadata?: MetadataInit;
  /**
   * The span this call is made for: a unary call gets a client span under
   * it, and the callee gets its traceparent (streams carry `trace` itself).
   */
  trace?: Span;
}

/** Options of {@link connect} and {@link Client}. */
export interface ClientOptions {
  /** Unread messages a stream may buffer before the connection pauses (default 256). */
  streamQueue?: number;
}

/** The low-level side of a streaming call: raw message bytes in and out. */
export interface ClientStream extends AsyncIterable<Uint8Array> {
  /** Sends one message (client- and bidi-streaming only); waits when the socket is backed up. */
  send(payload: Uint8Array): Promise<void>;
  /** Tells the server no more messages follow. */
  closeSend(): void;
}

/** A streaming call kind, as protobuf-es names them. */
export type StreamKind = "server_streaming" | "client_streaming" | "bidi_streaming";

/** @internal Shared with stubs.ts. */
export const NO_OPTIONS: CallOptions = {};
const STREAM_HIGH_WATER = 1 << 20;
/** @internal The Client methods stubs.ts calls (not part of its public API). */
export const INVOKE: unique symbol = Symbol("invoke");
/** @internal */
export const OPEN: unique symbol = Symbol("open");

/**
 * Connects to the ttrpc server listening on unix socket `path` (a
 * containerd-style "unix://" prefix is accepted).
 */
export async function connect(path: string, opts: ClientOptions = {}): Promise<Client> {
  path = path.replace(/^unix:\/\//, "");
  let conn: Deno.UnixConn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch (err) {
    throw new BerthError(
      Code.Unavailable,
      `ttrpc: cannot connect to ${path}: ${err instanceof Error ? err.message : String(err)}`,
      { cause: err },
    );
  }
  return new Client(conn, opts);
}

/** Something on the client's stream table: a unary call or a stream. */
interface Pending {
  receive(type: number, flags: number, payload: Uint8Array): void | Promise<void>;
  fail(err: BerthError): void;
}

/** A ttrpc client on one connection. */
export class Client {
  #conn: Deno.Conn;
  #writer: FrameWriter;
  #calls = new Map<number, Pending>();
  #nextId = 1;
  #error: BerthError | undefined;
  #prefixes = new Map<string, Map<string, Uint8Array>>();
  #queueSize: number;
  /** Resolves when the connection is finished (closed by either side). */
  readonly done: Promise<void>;

  /** Takes over an already connected `conn`. */
  constructor(conn: Deno.Conn, opts: ClientOptions = {}) {
    this.#conn = conn;
    this.#queueSize = opts.streamQueue ?? 256;
    this.#writer = new FrameWriter(conn, (err) => {
      this.#shut(
        new BerthError(Code.Unavailable, `ttrpc: connection broken: ${String(err)}`, {
          cause: err,
        }),
      );
    });
    const handler = {
      frame: (id: number, type: number, flags: number, payload: Uint8Array) =>
        this.#frame(id, type, flags, payload),
      oversized: (id: number, _type: number, _flags: number, length: number) =>
        this.#oversized(id, length),
    };
    this.done = readFrames(conn, handler).then(
      () => this.#shut(new BerthError(Code.Unavailable, "ttrpc: connection closed by server")),
      (err) => {
        this.#shut(
          this.#error ??
            new BerthError(Code.Unavailable, `ttrpc: connection broken: ${String(err)}`, {
              cause: err,
            }),
        );
      },
    );
  }

  /** True once the connection is closed or broken; every call then fails with Unavailable. */
  get closed(): boolean {
    return this.#error !== undefined;
  }

  /** Closes the connection; pending calls fail with Unavailable at once. */
  close(): void {
    this.#shut(new BerthError(Code.Unavailable, "ttrpc: client closed"));
  }

  #shut(err: BerthError): void {
    if (this.#error !== undefined) return;
    this.#error = err;
    this.#writer.close();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    const calls = [...this.#calls.values()];
    this.#calls.clear();
    for (const c of calls) c.fail(err);
  }

  #closedError(): BerthError {
    return new BerthError(Code.Unavailable, this.#error!.message, { cause: this.#error });
  }

  #prefix(service: string, method: string): Uint8Array {
    let byMethod = this.#prefixes.get(service);
    if (byMethod === undefined) this.#prefixes.set(service, byMethod = new Map());
    let p = byMethod.get(method);
    if (p === undefined) byMethod.set(method, p = requestPrefix(service, method));
    return p;
  }

  /**
   * Calls service/method with an encoded request; resolves with the encoded
   * response, or rejects with a BerthError carrying the server's code.
   */
  call(
    service: string,
    method: string,
    payload: Uint8Array,
    opts: CallOptions = NO_OPTIONS,
  ): Promise<Uint8Array> {
    const md = opts.metadata === undefined
      ? undefined
      : encodeMetadata(metadataPairs(opts.metadata));
    if (opts.trace !== undefined) {
      const prefix = this.#prefix(service, method);
      return tracedUnary(
        opts.trace,
        `${service}/${method}`,
        md,
        (traced) => this[INVOKE](prefix, method, payload, opts, traced, undefined),
      ) as Promise<Uint8Array>;
    }
    return this[INVOKE](
      this.#prefix(service, method),
      method,
      payload,
      opts,
      md,
      undefined,
    ) as Promise<
      Uint8Array
    >;
  }

  /**
   * Opens a streaming call. For server streaming `first` is the request;
   * for client and bidi streaming it is usually undefined and messages go
   * through {@link ClientStream.send}. Iterate the result for the server's messages.
   */
  stream(
    service: string,
    method: string,
    kind: StreamKind,
    first: Uint8Array | undefined,
    opts: CallOptions = NO_OPTIONS,
  ): ClientStream {
    let md = opts.metadata === undefined ? undefined : encodeMetadata(metadataPairs(opts.metadata));
    if (opts.trace !== undefined) md = withTraceMetadata(opts.trace, md);
    return this[OPEN](this.#prefix(service, method), method, kind, first, opts, md);
  }

  #allocate(): number {
    const id = this.#nextId;
    if (id > 0xffffffff) {
      throw new BerthError(
        Code.Unavailable,
        "ttrpc: stream ids exhausted on this connection; reconnect",
      );
    }
    this.#nextId += 2;
    return id;
  }

  /** @internal Unary call with a pre-encoded prefix; decodes into `output` when given. */
  [INVOKE](
    prefix: Uint8Array,
    method: string,
    payload: Uint8Array,
    opts: CallOptions,
    md: Uint8Array | undefined,
    output: DescMessage | undefined,
  ): Promise<unknown> {
    if (this.#error !== undefined) return Promise.reject(this.#closedError());
    const signal = opts.signal;
    if (signal?.aborted) return Promise.reject(canceledBy(signal));
    let id: number;
    try {
      const nanos = timeoutNano(opts.timeoutMs);
      id = this.#allocate();
      writeRequest(this.#writer, id, 0, prefix, payload, nanos, md);
    } catch (err) {
      return Promise.reject(tooLarge(err));
    }
    const call = new UnaryCall(this.#calls, id, method, output);
    this.#calls.set(id, call);
    if (opts.timeoutMs !== undefined) call.startTimer(opts.timeoutMs);
    if (signal !== undefined) call.watch(signal);
    return call.promise;
  }

  /** @internal Opens a stream with a pre-encoded prefix. */
  [OPEN](
    prefix: Uint8Array,
    method: string,
    kind: StreamKind,
    first: Uint8Array | undefined,
    opts: CallOptions,
    md: Uint8Array | undefined,
  ): ClientStream {
    const s = new StreamCall(this.#calls, this.#writer, 0, method, kind, this.#queueSize);
    if (this.#error !== undefined) {
      s.fail(this.#closedError());
      return s;
    }
    const signal = opts.signal;
    if (signal?.aborted) {
      s.fail(canceledBy(signal));
      return s;
    }
    const clientStreams = kind !== "server_streaming";
    try {
      const nanos = timeoutNano(opts.timeoutMs);
      s.id = this.#allocate();
      writeRequest(
        this.#writer,
        s.id,
        clientStreams ? Flag.RemoteOpen : Flag.RemoteClosed,
        prefix,
        first,
        nanos,
        md,
      );
    } catch (err) {
      s.fail(tooLarge(err));
      return s;
    }
    s.localClosed = !clientStreams;
    this.#calls.set(s.id, s);
    if (opts.timeoutMs !== undefined) s.startTimer(opts.timeoutMs);
    if (signal !== undefined) s.watch(signal);
    return s;
  }

  // Frames from the server, routed by stream id.
  #frame(id: number, type: number, flags: number, payload: Uint8Array): void | Promise<void> {
    // Unknown ids are answers to calls that already gave up (deadline,
    // cancel): dropping them is the expected case, not an error.
    return this.#calls.get(id)?.receive(type, flags, payload);
  }

  // A frame over the limit was skipped; only its call fails.
  #oversized(id: number, length: number): void {
    this.#calls.get(id)?.fail(
      new BerthError(
        Code.ResourceExhausted,
        `ttrpc: response of ${length} bytes exceeds the limit of ${MAX_MESSAGE_LENGTH} bytes`,
      ),
    );
  }
}

function timeoutNano(ms: number | undefined): number {
  if (ms === undefined) return 0;
  if (!(ms >= 0) || !Number.isFinite(ms)) {
    throw new BerthError(Code.InvalidArgument, `ttrpc: invalid timeout ${ms} ms`);
  }
  // 0 would mean "no deadline" on the wire; one nanosecond is "already due".
  return Math.max(1, Math.round(ms * 1e6));
}

function tooLarge(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  if (err instanceof RangeError) return new BerthError(Code.ResourceExhausted, err.message);
  return new BerthError(Code.Internal, String(err), { cause: err });
}

function canceledBy(signal: AbortSignal): BerthError {
  const r = signal.reason;
  if (r instanceof BerthError) return r;
  return new BerthError(
    Code.Canceled,
    `ttrpc: call canceled${r instanceof Error ? `: ${r.message}` : ""}`,
    {
      cause: r,
    },
  );
}

/** Deadline timer and abort-signal wiring shared by unary calls and streams. */
abstract class Watched implements Pending {
  #timer: ReturnType<typeof setTimeout> | undefined;
  #signal: AbortSignal | undefined;
  constructor(readonly calls: Map<number, Pending>, public id: number, readonly method: string) {}

  abstract receive(type: number, flags: number, payload: Uint8Array): void | Promise<void>;
  abstract fail(err: BerthError): void;

  startTimer(ms: number): void {
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.fail(
        new BerthError(
          Code.DeadlineExceeded,
          `ttrpc: ${this.method}: deadline exceeded after ${ms} ms`,
        ),
      );
    }, ms);
  }

  watch(signal: AbortSignal): void {
    this.#signal = signal;
    signal.addEventListener("abort", this, { once: true });
  }

  // EventListener: the caller's signal fired.
  handleEvent(): void {
    this.fail(canceledBy(this.#signal!));
  }

  /** Leaves the stream table and drops timer and listener. */
  protected settle(): void {
    if (this.calls.get(this.id) === this) this.calls.delete(this.id);
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    if (this.#signal !== undefined) {
      this.#signal.removeEventListener("abort", this);
      this.#signal = undefined;
    }
  }
}

/** One unary call waiting for its Response. */
class UnaryCall extends Watched {
  readonly promise: Promise<unknown>;
  #resolve!: (v: unknown) => void;
  #reject!: (e: unknown) => void;
  #done = false;
  #output: DescMessage | undefined;

  constructor(
    calls: Map<number, Pending>,
    id: number,
    method: string,
    output: DescMessage | undefined,
  ) {
    super(calls, id, method);
    this.#output = output;
    this.promise = new Promise((resolve, reject) => {
      this.#resolve = resolve;
      this.#reject = reject;
    });
  }

  receive(type: number, _flags: number, payload: Uint8Array): void {
    if (this.#done) return;
    if (type !== MessageType.Response) {
      this.fail(
        new BerthError(
          Code.Internal,
          `ttrpc: ${this.method}: unexpected message type ${type} on a unary call`,
        ),
      );
      return;
    }
    this.#done = true;
    this.settle();
    let resp;
    try {
      resp = decodeResponse(payload);
    } catch (err) {
      this.#reject(
        new BerthError(
          Code.Internal,
          `ttrpc: ${this.method}: malformed response: ${(err as Error).message}`,
        ),
      );
      return;
    }
    if (resp.code !== 0) {
      this.#reject(errorFromStatus(resp.code, resp.message));
      return;
    }
    if (this.#output === undefined) {
      this.#resolve(resp.payload);
      return;
    }
    try {
      this.#resolve(fromBinary(this.#output, resp.payload));
    } catch (err) {
      this.#reject(
        new BerthError(
          Code.Internal,
          `ttrpc: ${this.method}: cannot decode ${this.#output.typeName}: ${String(err)}`,
        ),
      );
    }
  }

  fail(err: BerthError): void {
    if (this.#done) return;
    this.#done = true;
    this.settle();
    this.#reject(err);
  }
}

/** One streaming call: the inbound queue plus the outbound half. */
/** @internal A streaming call (stubs.ts reads its queue). */
export class StreamCall extends Watched implements ClientStream {
  // Nothing may be sent until the request frame is out.
  localClosed = true;
  #writer: FrameWriter;
  #kind: StreamKind;
  #inbound: MessageQueue<Uint8Array>;
  #finished = false;

  constructor(
    calls: Map<number, Pending>,
    writer: FrameWriter,
    id: number,
    method: string,
    kind: StreamKind,
    queueSize: number,
  ) {
    super(calls, id, method);
    this.#writer = writer;
    this.#kind = kind;
    this.#inbound = new MessageQueue<Uint8Array>(queueSize, () => this.#abandon());
  }

  get finished(): boolean {
    return this.#finished;
  }

  [Symbol.asyncIterator](): AsyncIterator<Uint8Array> {
    return this.#inbound;
  }

  async send(payload: Uint8Array): Promise<void> {
    if (this.#kind === "server_streaming") {
      throw new BerthError(
        Code.FailedPrecondition,
        `ttrpc: ${this.method}: a server-streaming call cannot send`,
      );
    }
    if (this.#finished) {
      throw new BerthError(Code.FailedPrecondition, `ttrpc: ${this.method}: stream is finished`);
    }
    if (this.localClosed) {
      throw new BerthError(Code.FailedPrecondition, `ttrpc: ${this.method}: send after closeSend`);
    }
    try {
      this.#writer.frame(this.id, MessageType.Data, 0, payload);
    } catch (err) {
      throw tooLarge(err);
    }
    if (this.#writer.pendingBytes > STREAM_HIGH_WATER) await this.#writer.drained();
  }

  closeSend(): void {
    if (this.localClosed || this.#finished) return;
    this.localClosed = true;
    this.#writer.reserve(this.id, MessageType.Data, Flag.RemoteClosed | Flag.NoData, 0);
  }

  receive(type: number, flags: number, payload: Uint8Array): void | Promise<void> {
    if (this.#finished) return;
    if (type === MessageType.Data) {
      if ((flags & Flag.NoData) === 0) this.#inbound.push(payload);
      if ((flags & Flag.RemoteClosed) !== 0) {
        this.#finish();
        this.#inbound.end();
      } else if (this.#inbound.full) return this.#inbound.whenSpace();
      return;
    }
    if (type === MessageType.Response) {
      let resp;
      try {
        resp = decodeResponse(payload);
      } catch (err) {
        this.fail(
          new BerthError(
            Code.Internal,
            `ttrpc: ${this.method}: malformed response: ${(err as Error).message}`,
          ),
        );
        return;
      }
      if (resp.code !== 0) {
        this.fail(errorFromStatus(resp.code, resp.message));
        return;
      }
      // A client-streaming call's answer (or a final message) comes here.
      if (this.#kind === "client_streaming" || resp.payload.length > 0) {
        this.#inbound.push(resp.payload);
      }
      this.#finish();
      this.#inbound.end();
      return;
    }
    this.fail(
      new BerthError(Code.Internal, `ttrpc: ${this.method}: unexpected message type ${type}`),
    );
  }

  fail(err: BerthError): void {
    if (this.#finished) return;
    this.#finish();
    this.#inbound.fail(err);
  }

  #finish(): void {
    this.#finished = true;
    this.settle();
    // Let a server still waiting for our input see its end.
    if (!this.localClosed && this.#writer.error === undefined) this.closeSend();
  }

  #abandon(): void {
    if (!this.#finished) this.#finish();
  }
}
