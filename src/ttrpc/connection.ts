/**
 * One accepted ttrpc connection: its frames read in order, the calls in
 * flight on it (unary and streaming, each with its deadline and
 * cancellation), and their answers written back. The server owns the
 * listener and the set of connections; this file owns one.
 *
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import {
  type CallContext,
  type CallObserver,
  callSpan,
  callUnary,
  decodeInput,
  encodeOutput,
  isClosedError,
  isThenable,
  MessageQueue,
  type Metadata,
  type MethodEntry,
  ServedCall,
  type ServiceSet,
  statusFromError,
} from "../rpc/mod.ts";
import { tracer } from "../tracing/mod.ts";
import {
  Flag,
  FrameWriter,
  FramingError,
  MAX_MESSAGE_LENGTH,
  MessageType,
  readFrames,
} from "./channel.ts";
import { decodeRequest, type RequestEnvelope, responseLength, writeResponse } from "./envelope.ts";

/** What a connection takes from the server's options. */
export interface ConnectionOptions {
  /** Messages a streaming handler may have unread before the peer is paused (default 64). */
  streamQueue?: number;
  /** How long a full stream may pause the connection before it fails (ms, default 1000). */
  streamFullTimeoutMs?: number;
  /** Told of every call's start and end (see {@link CallObserver}). */
  observe?: CallObserver;
}

const EMPTY = new Uint8Array(0);
// Outbound bytes a streaming handler may queue before it waits for the socket.
const STREAM_HIGH_WATER = 1 << 20;
// Outbound bytes queued on a connection before its peer's input is paused.
const WRITE_HIGH_WATER = 16 << 20;

/** One call being served; it is the handler's {@link CallContext}. */
class ServerCall extends ServedCall implements CallContext {
  readonly service: string;
  readonly method: string;
  readonly metadata: Metadata;
  readonly deadline: number | undefined;
  /** The method being served (kept for decoding the stream's later messages). */
  readonly entry: MethodEntry;
  /** Messages from the peer, for client- and bidi-streaming calls. */
  inbound: MessageQueue<unknown> | undefined;
  #ctrl: AbortController | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #reason: BerthError | undefined;

  constructor(req: RequestEnvelope, entry: MethodEntry) {
    super();
    this.entry = entry;
    this.service = req.service;
    this.method = req.method;
    const md: Metadata = new Map();
    if (req.metadata !== undefined) {
      for (const [k, v] of req.metadata) {
        const key = k.toLowerCase();
        const list = md.get(key);
        if (list === undefined) md.set(key, [v]);
        else list.push(v);
      }
    }
    this.metadata = md;
    this.deadline = req.timeoutNano !== 0 ? Date.now() + req.timeoutNano / 1e6 : undefined;
  }

  // The signal is made only when a handler asks for it: most calls never do,
  // and an AbortController plus a timer per call is measurable overhead.
  get signal(): AbortSignal {
    if (this.#ctrl === undefined) {
      this.#ctrl = new AbortController();
      if (this.#reason !== undefined) this.#ctrl.abort(this.#reason);
      else if (this.deadline !== undefined && !this.finished) {
        const left = this.deadline - Date.now();
        if (left <= 0) {
          this.abort(new BerthError(Code.DeadlineExceeded, "ttrpc: deadline exceeded"));
        } else {
          this.#timer = setTimeout(
            () => this.abort(new BerthError(Code.DeadlineExceeded, "ttrpc: deadline exceeded")),
            left,
          );
        }
      }
    }
    return this.#ctrl.signal;
  }

  /** Cancels the call (deadline, connection gone); the handler sees `signal` abort. */
  abort(reason: BerthError): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.release();
    this.inbound?.fail(reason);
    this.#ctrl?.abort(reason);
  }

  /** Drops the deadline timer once the call is over. */
  release(): void {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }
}

/** One accepted connection and the calls in flight on it. */
export class ServerConnection {
  #conn: Deno.UnixConn;
  #services: ServiceSet;
  #writer: FrameWriter;
  #calls = new Map<number, ServerCall>();
  #lastId = 0;
  #closed = false;
  #closeWhenIdle = false;
  #queueSize: number;
  #fullTimeoutMs: number;
  #observe: CallObserver | undefined;
  #onClose: (c: ServerConnection) => void;

  constructor(
    conn: Deno.UnixConn,
    services: ServiceSet,
    opts: ConnectionOptions,
    onClose: (c: ServerConnection) => void,
  ) {
    this.#conn = conn;
    this.#services = services;
    this.#queueSize = opts.streamQueue ?? 64;
    this.#fullTimeoutMs = opts.streamFullTimeoutMs ?? 1000;
    this.#observe = opts.observe;
    this.#onClose = onClose;
    this.#writer = new FrameWriter(conn, (err) => {
      if (!this.#closed) {
        log.debug("ttrpc: write failed; closing connection", { error: String(err) });
      }
      this.close();
    });
  }

  async run(): Promise<void> {
    try {
      await readFrames(this.#conn, this);
    } catch (err) {
      if (this.#closed || isClosedError(err) || err instanceof Deno.errors.ConnectionReset) {
        // We closed it, or the peer went away: nothing to report.
      } else if (err instanceof FramingError) {
        log.debug("ttrpc: peer hung up inside a frame", { error: err.message });
      } else {
        log.warn("ttrpc: dropping connection", { error: String(err) });
      }
    } finally {
      this.close();
    }
  }

  /** Closes the connection once no call is in flight and answers are written. */
  closeWhenIdle(): void {
    this.#closeWhenIdle = true;
    this.#maybeIdleClose();
  }

  #maybeIdleClose(): void {
    if (!this.#closeWhenIdle || this.#closed || this.#calls.size > 0) return;
    this.#writer.drained().then(() => {
      if (this.#calls.size === 0) this.close();
    });
  }

  /** Closes now: calls in flight are aborted and their answers dropped. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#writer.close();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    const gone = new BerthError(Code.Unavailable, "ttrpc: connection closed");
    for (const call of this.#calls.values()) {
      call.settle(gone.code);
      call.abort(gone);
    }
    this.#calls.clear();
    this.#onClose(this);
  }

  /** Answers `id` with an error status and forgets the call on it, if any. */
  #fail(id: number, code: Code, message: string): void {
    const call = this.#calls.get(id);
    if (call !== undefined) {
      this.#calls.delete(id);
      call.settle(code);
      call.abort(new BerthError(code, message));
    }
    if (!this.#closed) writeResponse(this.#writer, id, code, message, undefined);
    this.#maybeIdleClose();
  }

  // FrameHandler: called by readFrames for each frame, in order.
  frame(id: number, type: number, flags: number, payload: Uint8Array): void | Promise<void> {
    if (this.#closed) return;
    // A peer that sends without reading our answers is paused, not buffered without end.
    if (this.#writer.pendingBytes > WRITE_HIGH_WATER) {
      return this.#writer.drained().then(() => this.frame(id, type, flags, payload));
    }
    if ((id & 1) === 0) {
      this.#fail(
        id,
        Code.InvalidArgument,
        `ttrpc: stream id ${id} is even; client streams use odd ids`,
      );
      return;
    }
    if (type === MessageType.Request) return this.#request(id, flags, payload);
    if (type === MessageType.Data) return this.#data(id, flags, payload);
    this.#fail(id, Code.InvalidArgument, `ttrpc: unsupported message type ${type} on stream ${id}`);
  }

  // FrameHandler: a frame over the size limit was skipped.
  oversized(id: number, _type: number, _flags: number, length: number): void {
    if (this.#closed) return;
    this.#fail(
      id,
      Code.ResourceExhausted,
      `ttrpc: message of ${length} bytes exceeds the limit of ${MAX_MESSAGE_LENGTH} bytes`,
    );
  }

  #request(id: number, flags: number, payload: Uint8Array): void {
    if (id <= this.#lastId) {
      this.#fail(
        id,
        Code.InvalidArgument,
        `ttrpc: stream id ${id} is not above the last one (${this.#lastId})`,
      );
      return;
    }
    this.#lastId = id;
    let req: RequestEnvelope;
    try {
      req = decodeRequest(payload);
    } catch (err) {
      this.#fail(
        id,
        Code.InvalidArgument,
        `ttrpc: malformed request envelope: ${(err as Error).message}`,
      );
      return;
    }
    let entry: MethodEntry;
    try {
      entry = this.#services.lookup(req.service, req.method);
    } catch (err) {
      const st = statusFromError(err);
      this.#fail(id, st.code, st.message);
      return;
    }
    const call = new ServerCall(req, entry);
    if (this.#observe !== undefined) call.observed = this.#observe(entry);
    const t = tracer();
    if (t !== undefined) call.span = callSpan(t, call.service, call.method, call.metadata);
    this.#calls.set(id, call);
    switch (entry.kind) {
      case "unary":
        return this.#unary(id, call, entry, req.payload ?? EMPTY);
      case "server_streaming":
        return this.#serverStreaming(id, call, entry, req.payload ?? EMPTY);
      default:
        return this.#clientStreaming(id, call, entry, flags, req.payload);
    }
  }

  #unary(id: number, call: ServerCall, entry: MethodEntry, payload: Uint8Array): void {
    let out: Uint8Array | Promise<Uint8Array>;
    try {
      out = callUnary(entry, payload, call);
    } catch (err) {
      this.#finish(id, call, undefined, err);
      return;
    }
    if (out instanceof Uint8Array) this.#finish(id, call, out, undefined);
    else {
      out.then(
        (bytes) => this.#finish(id, call, bytes, undefined),
        (err) => this.#finish(id, call, undefined, err),
      );
    }
  }

  /** Sends the one Response of a call (unary or client-streaming) and forgets it. */
  #finish(id: number, call: ServerCall, bytes: Uint8Array | undefined, err: unknown): void {
    call.release();
    if (call.finished) return;
    call.finished = true;
    this.#calls.delete(id);
    call.inbound?.end();
    if (bytes !== undefined && responseLength(0, "", bytes.length) > MAX_MESSAGE_LENGTH) {
      err = new BerthError(
        Code.ResourceExhausted,
        `ttrpc: response of ${bytes.length} bytes exceeds the limit of ${MAX_MESSAGE_LENGTH} bytes`,
      );
    }
    if (err !== undefined) {
      const st = statusFromError(err);
      call.settle(st.code);
      if (st.code === Code.Unknown || st.code === Code.Internal) {
        log.debug("ttrpc: handler failed", {
          method: `${call.service}/${call.method}`,
          error: st.message,
        });
      }
      writeResponse(this.#writer, id, st.code, truncate(st.message), undefined);
    } else {
      call.settle(Code.OK);
      writeResponse(this.#writer, id, 0, "", bytes);
    }
    this.#maybeIdleClose();
  }

  #serverStreaming(id: number, call: ServerCall, entry: MethodEntry, payload: Uint8Array): void {
    let out: unknown;
    try {
      out = entry.handler!.call(entry.self, decodeInput(entry, payload), call);
    } catch (err) {
      this.#finish(id, call, undefined, err);
      return;
    }
    this.#pumpOut(id, call, entry, out);
  }

  #clientStreaming(
    id: number,
    call: ServerCall,
    entry: MethodEntry,
    flags: number,
    first: Uint8Array | undefined,
  ): void {
    const inbound = new MessageQueue<unknown>(this.#queueSize);
    call.inbound = inbound;
    // A streaming client sends no payload in the request; an old-style
    // (unary) caller of a streaming method sends its one message there.
    if (first !== undefined) {
      try {
        inbound.push(decodeInput(entry, first));
      } catch (err) {
        this.#finish(id, call, undefined, err);
        return;
      }
    }
    if ((flags & Flag.RemoteOpen) === 0) inbound.end();
    let out: unknown;
    try {
      out = entry.handler!.call(entry.self, inbound, call);
    } catch (err) {
      this.#finish(id, call, undefined, err);
      return;
    }
    if (entry.kind === "bidi_streaming") {
      this.#pumpOut(id, call, entry, out);
      return;
    }
    if (isThenable(out)) {
      Promise.resolve(out).then(
        (v) => this.#finishEncoded(id, call, entry, v),
        (err) => this.#finish(id, call, undefined, err),
      );
    } else this.#finishEncoded(id, call, entry, out);
  }

  #finishEncoded(id: number, call: ServerCall, entry: MethodEntry, value: unknown): void {
    let bytes: Uint8Array;
    try {
      bytes = encodeOutput(entry, value);
    } catch (err) {
      this.#finish(id, call, undefined, err);
      return;
    }
    this.#finish(id, call, bytes, undefined);
  }

  /** Streams a handler's output as Data frames, then closes the stream. */
  async #pumpOut(id: number, call: ServerCall, entry: MethodEntry, out: unknown): Promise<void> {
    let failure: unknown;
    try {
      if (out === null || typeof out !== "object" || !(Symbol.asyncIterator in out)) {
        throw new BerthError(
          Code.Internal,
          `ttrpc: handler ${entry.service}/${entry.method} did not return an async iterable`,
        );
      }
      for await (const msg of out as AsyncIterable<unknown>) {
        if (call.finished) break;
        const bytes = encodeOutput(entry, msg);
        if (bytes.length > MAX_MESSAGE_LENGTH) {
          throw new BerthError(
            Code.ResourceExhausted,
            `ttrpc: stream message of ${bytes.length} bytes exceeds the limit of ${MAX_MESSAGE_LENGTH} bytes`,
          );
        }
        this.#writer.frame(id, MessageType.Data, 0, bytes);
        if (this.#writer.pendingBytes > STREAM_HIGH_WATER) await this.#writer.drained();
      }
    } catch (err) {
      failure = err;
    }
    call.release();
    if (call.finished) return;
    if (failure !== undefined) {
      this.#finish(id, call, undefined, failure);
      return;
    }
    call.settle(Code.OK);
    this.#calls.delete(id);
    call.inbound?.end();
    this.#writer.reserve(id, MessageType.Data, Flag.RemoteClosed | Flag.NoData, 0);
    this.#maybeIdleClose();
  }

  #data(id: number, flags: number, payload: Uint8Array): void | Promise<void> {
    const call = this.#calls.get(id);
    const inbound = call?.inbound;
    // Data for a stream that already ended (or never took data) is dropped:
    // the peer may legitimately race a close against the server's answer.
    if (call === undefined || inbound === undefined || inbound.closed) return;
    if ((flags & Flag.NoData) === 0) {
      let msg: unknown;
      try {
        msg = decodeInput(call.entry, payload);
      } catch (err) {
        const st = statusFromError(err);
        this.#fail(id, st.code, st.message);
        return;
      }
      inbound.push(msg);
    }
    if ((flags & Flag.RemoteClosed) !== 0) inbound.end();
    else if (inbound.full) return this.#waitForRoom(id, call, inbound);
  }

  /** Pauses reading while a stream's handler catches up, failing the stream if it takes too long. */
  async #waitForRoom(id: number, call: ServerCall, inbound: MessageQueue<unknown>): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tooLong = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), this.#fullTimeoutMs);
    });
    const late = await Promise.race([inbound.whenSpace().then(() => false), tooLong]);
    clearTimeout(timer);
    if (late && !call.finished) {
      this.#fail(
        id,
        Code.ResourceExhausted,
        `ttrpc: stream ${id} handler is not reading its messages`,
      );
    }
  }
}

function truncate(message: string): string {
  // A status message must fit in a frame with room to spare.
  return message.length > 64 << 10 ? message.slice(0, 64 << 10) + "..." : message;
}
