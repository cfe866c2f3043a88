/**
 * A gRPC server over cleartext HTTP/2 on a unix socket (our own HTTP/2 in
 * h2/, on Deno's unix sockets), for containerd's own clients (ctr, the Go
 * client library). It serves the same {@link ServiceSet} registrations and
 * handlers as the ttrpc server: only the transport differs. Unary, server-,
 * client- and bidi-streaming calls; status in `grpc-status`/`grpc-message`
 * trailers (or a trailers-only response when nothing was sent);
 * `grpc-timeout` deadlines; request headers as call metadata; requests in
 * `grpc-encoding: gzip` (advertised in `grpc-accept-encoding`). Answers are
 * never compressed (the spec lets a server answer identity whatever the
 * client accepts): berth's messages are small and local, and gzip would
 * cost each call CPU time to save bytes on a unix socket.
 *
 * @module
 */

import { BerthError, Code, toBerthError } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import {
  acceptEach,
  type CallContext,
  type CallObserver,
  callSpan,
  callUnary,
  decodeInput,
  encodeOutput,
  isThenable,
  listenPrivate,
  MessageQueue,
  type Metadata,
  type MethodEntry,
  type RegisterOptions,
  ServedCall,
  type ServiceImpl,
  ServiceSet,
} from "../rpc/mod.ts";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { tracer } from "../tracing/mod.ts";
import {
  ACCEPT_ENCODING,
  encodeStatusMessage,
  frameMessage,
  MAX_GRPC_MESSAGE,
  MessageReader,
  parseTimeout,
} from "./framing.ts";
import { H2Connection, type H2Handler, type H2Options, type H2Stream } from "./h2/connection.ts";
import { encodeHeaders } from "./h2/hpack.ts";

/** Options of {@link GrpcServer}. */
export interface GrpcServerOptions {
  /** Largest message accepted from a client (default 16 MiB, as containerd). */
  maxRecvMessageSize?: number;
  /** Largest message sent to a client (default 16 MiB, as containerd). */
  maxSendMessageSize?: number;
  /** Messages a streaming handler may have unread before the client is paused (default 64). */
  streamQueue?: number;
  /** HTTP/2 settings and timeouts of every connection. */
  http2?: H2Options;
  /** Told of every call's start and end (see {@link CallObserver}). */
  observe?: CallObserver;
  /**
   * Vets each connection on a unix socket, synchronously, right after its
   * accept (as the ttrpc server's `authorize`). A PermissionDenied thrown
   * here becomes the answer to every call on that connection; any other
   * error closes it. TCP connections carry no peer credentials and are not vetted.
   */
  authorize?: (conn: Deno.UnixConn) => unknown;
}

// Headers that are HTTP/2 or gRPC plumbing, not the caller's metadata.
const RESERVED = new Set([
  "content-type",
  "te",
  "user-agent",
  "grpc-timeout",
  "grpc-encoding",
  "grpc-accept-encoding",
  "accept-encoding",
  "content-length",
]);

// What every answer's headers say, and the block, encoded once.
const RESPONSE_FIELDS = [
  ":status",
  "200",
  "content-type",
  "application/grpc",
  "grpc-accept-encoding",
  ACCEPT_ENCODING,
];
const RESPONSE_HEADERS = encodeHeaders(RESPONSE_FIELDS);
const OK_TRAILERS = encodeHeaders(["grpc-status", "0"]);
const NOT_GRPC_HEADERS = encodeHeaders([":status", "415", "content-type", "text/plain"]);
const NOT_GRPC_BODY = new TextEncoder().encode(
  "berth serves gRPC here (POST, content-type application/grpc)\n",
);

/** One call being served; it is the handler's {@link CallContext}. */
class GrpcCall extends ServedCall implements CallContext {
  /** The response headers went out (a later status travels in trailers). */
  headersSent = false;
  inbound: MessageQueue<unknown> | undefined = undefined;
  reader: MessageReader;
  // Unary and server-streaming: the request message and how many came.
  request: Uint8Array | undefined = undefined;
  count = 0;
  timer: ReturnType<typeof setTimeout> | undefined = undefined;
  #ctrl: AbortController | undefined;
  #reason: BerthError | undefined;

  constructor(
    readonly stream: H2Stream,
    readonly service: string,
    readonly method: string,
    readonly entry: MethodEntry,
    readonly metadata: Metadata,
    readonly deadline: number | undefined,
    maxRecv: number,
    encoding: "gzip" | undefined,
  ) {
    super();
    this.reader = new MessageReader(maxRecv, encoding);
  }

  // Made only when a handler asks: most calls never do.
  get signal(): AbortSignal {
    if (this.#ctrl === undefined) {
      this.#ctrl = new AbortController();
      if (this.#reason !== undefined) this.#ctrl.abort(this.#reason);
    }
    return this.#ctrl.signal;
  }

  /** Cancels the call: the handler's signal aborts and its inbound stream fails. */
  abort(reason: BerthError): void {
    if (this.#reason !== undefined) return;
    this.#reason = reason;
    this.inbound?.fail(reason);
    this.#ctrl?.abort(reason);
  }
}

/** Where {@link GrpcServer.listenTcp} listens, and with what TLS identity if any. */
export interface TcpListenOptions {
  /** An IP address or host name to bind. */
  hostname: string;
  /** The port (0: any free one; the bound one is returned). */
  port: number;
  /** PEM certificate chain and key: TLS (ALPN "h2"); without them, plaintext HTTP/2. */
  tls?: { cert: string; key: string };
}

/** Serves registered services over gRPC on unix sockets, and on TCP when asked. */
export class GrpcServer implements H2Handler {
  #services = new ServiceSet();
  #listeners = new Set<Deno.Listener>();
  #serving = new Set<Promise<void>>();
  #conns = new Set<H2Connection>();
  #calls = new Set<GrpcCall>();
  #maxRecv: number;
  #maxSend: number;
  #queueSize: number;
  #h2: H2Options;
  #closing = false;
  #observe: CallObserver | undefined;
  #forget = (c: H2Connection) => this.#conns.delete(c);
  #authorize: ((conn: Deno.UnixConn) => unknown) | undefined;

  constructor(opts: GrpcServerOptions = {}) {
    this.#maxRecv = opts.maxRecvMessageSize ?? MAX_GRPC_MESSAGE;
    this.#maxSend = opts.maxSendMessageSize ?? MAX_GRPC_MESSAGE;
    this.#queueSize = opts.streamQueue ?? 64;
    this.#h2 = opts.http2 ?? {};
    this.#observe = opts.observe;
    this.#authorize = opts.authorize;
  }

  /** Registers `impl` for `service` (as {@link ServiceSet.register}). */
  register<S extends GenService<GenServiceMethods>>(
    service: S,
    impl: ServiceImpl<S>,
    opts?: RegisterOptions,
  ): void {
    this.#services.register(service, impl, opts);
  }

  /** Registered service names. */
  names(): string[] {
    return this.#services.names();
  }

  /** Open connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Listens on the unix socket `path`, made 0600, and serves it in the
   * background. A stale socket file is replaced; a live one is
   * AlreadyExists. The file is removed when the server closes.
   */
  async listen(path: string): Promise<void> {
    if (this.#closing) throw new BerthError(Code.Unavailable, "grpc: server is shut down");
    const { listener, removeFile } = await listenPrivate(path);
    this.#listeners.add(listener);
    const done = this.#accept(listener).finally(() => {
      this.#listeners.delete(listener);
      return removeFile();
    });
    this.#serving.add(done);
    done.finally(() => this.#serving.delete(done));
  }

  /**
   * Listens on TCP (containerd's `grpc.tcp_address`) and serves it in the
   * background, the same services as the unix socket; returns the address
   * bound. Plaintext HTTP/2 unless `tls` is given. TCP has no peer
   * credentials or file modes: whoever reaches the port is a client.
   */
  listenTcp(opts: TcpListenOptions): Deno.NetAddr {
    if (this.#closing) throw new BerthError(Code.Unavailable, "grpc: server is shut down");
    const listener: Deno.Listener = opts.tls === undefined
      ? Deno.listen({ transport: "tcp", hostname: opts.hostname, port: opts.port })
      : Deno.listenTls({
        hostname: opts.hostname,
        port: opts.port,
        cert: opts.tls.cert,
        key: opts.tls.key,
        // gRPC clients ask for h2 and refuse a TLS server that does not agree on it.
        alpnProtocols: ["h2"],
      });
    this.#listeners.add(listener);
    const done = this.#accept(listener).finally(() => {
      this.#listeners.delete(listener);
    });
    this.#serving.add(done);
    done.finally(() => this.#serving.delete(done));
    return listener.addr as Deno.NetAddr;
  }

  #accept(listener: Deno.Listener): Promise<void> {
    return acceptEach(listener, {
      label: "grpc",
      stopped: () => this.#closing || !this.#listeners.has(listener),
      onConn: (conn) => {
        // Small frames, one write per tick: Nagle's wait would only add
        // latency (unix and TLS connections have no such switch).
        (conn as Partial<Deno.TcpConn>).setNoDelay?.(true);
        let refusal: BerthError | undefined;
        if (this.#authorize !== undefined && conn.localAddr.transport === "unix") {
          try {
            this.#authorize(conn as Deno.UnixConn);
          } catch (err) {
            log.warn("grpc: refusing connection", { error: String((err as Error)?.message) });
            if (!(err instanceof BerthError) || err.code !== Code.PermissionDenied) {
              conn.close();
              return;
            }
            refusal = err;
          }
        }
        const handler = refusal === undefined ? this : refusedHandler(refusal);
        const c = new H2Connection(conn, handler, this.#h2, this.#forget);
        this.#conns.add(c);
        c.run();
      },
    });
  }

  /** Stops accepting connections; those open go on being served. */
  stopAccepting(): void {
    this.#stopListening();
  }

  /**
   * Stops accepting, sends every connection a GOAWAY and lets calls in
   * flight finish for up to `timeoutMs`, then cancels what is left and
   * closes every connection.
   */
  async shutdown(opts: { timeoutMs?: number } = {}): Promise<void> {
    this.#stopListening();
    for (const c of this.#conns) c.goaway();
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    while ((this.#calls.size > 0 || this.#conns.size > 0) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.close();
  }

  /** Cancels every call and closes every connection now. */
  async close(): Promise<void> {
    this.#stopListening();
    for (const call of this.#calls) {
      call.abort(new BerthError(Code.Unavailable, "grpc: server closed"));
    }
    for (const c of [...this.#conns]) c.close();
    await Promise.all(this.#serving);
  }

  #stopListening(): void {
    this.#closing = true;
    for (const l of this.#listeners) {
      try {
        l.close();
      } catch { /* already closed */ }
    }
    this.#listeners.clear();
  }

  // ---- H2Handler ----

  /** A new request stream. */
  request(s: H2Stream, headers: string[], endStream: boolean): void {
    let method = "";
    let path = "";
    let ctype = "";
    let timeout: string | undefined;
    let encoding: string | undefined;
    const md: Metadata = new Map();
    for (let i = 0; i < headers.length; i += 2) {
      const k = headers[i];
      const v = headers[i + 1];
      if (k.charCodeAt(0) === 0x3a) {
        if (k === ":method") method = v;
        else if (k === ":path") path = v;
        continue;
      }
      if (k === "content-type") ctype = v;
      else if (k === "grpc-timeout") timeout = v;
      else if (k === "grpc-encoding") encoding = v;
      if (RESERVED.has(k)) continue;
      const list = md.get(k);
      if (list === undefined) md.set(k, [v]);
      else list.push(v);
    }
    const conn = s.conn;
    if (method !== "POST" || !ctype.startsWith("application/grpc")) {
      // Not a gRPC request at all: answer in HTTP terms, as gRPC servers do.
      conn.respond(s, NOT_GRPC_HEADERS, false);
      conn.write(s, NOT_GRPC_BODY);
      conn.end(s, null);
      return;
    }
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash > 0 ? slash : 1);
    const name = path.slice(slash + 1);
    let entry: MethodEntry;
    let timeoutMs: number | undefined;
    try {
      if (slash <= 0) {
        throw new BerthError(Code.Unimplemented, `malformed method name ${JSON.stringify(path)}`);
      }
      if (encoding !== undefined && encoding !== "identity" && encoding !== "gzip") {
        // The spec's answer: Unimplemented, with what is accepted (every
        // trailers-only answer carries grpc-accept-encoding).
        throw new BerthError(
          Code.Unimplemented,
          `grpc: grpc-encoding ${
            JSON.stringify(encoding)
          } is not supported (accepted: identity, ${ACCEPT_ENCODING})`,
        );
      }
      entry = this.#services.lookup(service, name);
      timeoutMs = parseTimeout(timeout);
    } catch (err) {
      conn.respond(s, trailersOnly(toBerthError(err)), true);
      return;
    }
    const call = new GrpcCall(
      s,
      service,
      name,
      entry,
      md,
      timeoutMs === undefined ? undefined : Date.now() + timeoutMs,
      this.#maxRecv,
      encoding === "gzip" ? "gzip" : undefined,
    );
    if (this.#observe !== undefined) call.observed = this.#observe(entry);
    const t = tracer();
    if (t !== undefined) call.span = callSpan(t, service, name, md);
    s.user = call;
    this.#calls.add(call);
    if (timeoutMs !== undefined) {
      call.timer = setTimeout(() => {
        call.timer = undefined;
        const err = new BerthError(Code.DeadlineExceeded, "context deadline exceeded");
        this.#finish(call, err);
        call.abort(err);
      }, timeoutMs);
    }
    if (entry.kind === "client_streaming" || entry.kind === "bidi_streaming") {
      this.#streaming(call);
    }
    if (endStream) this.data(s, new Uint8Array(0), true);
  }

  /** Request body bytes of a stream. */
  data(s: H2Stream, chunk: Uint8Array, endStream: boolean): Promise<void> | void {
    const call = s.user as GrpcCall | undefined;
    if (call === undefined || call.finished) return;
    const inbound = call.inbound;
    if (inbound === undefined) {
      // Unary and server-streaming: one request message, dispatched at the end.
      try {
        for (const m of call.reader.push(chunk)) {
          call.count++;
          call.request = m;
        }
      } catch (err) {
        this.#finish(call, err);
        return;
      }
      if (endStream) this.#dispatch(call);
      return;
    }
    // Client and bidi streaming: requests flow to the handler as they come,
    // and the client is paused (its window not refilled) while the handler
    // has a queue full unread.
    try {
      for (const m of call.reader.push(chunk)) inbound.push(decodeInput(call.entry, m));
    } catch (err) {
      this.#finish(call, err);
      call.abort(toBerthError(err));
      return;
    }
    if (endStream) {
      if (call.reader.pending !== 0) {
        const err = new BerthError(Code.Internal, "grpc: the stream ended inside a message");
        this.#finish(call, err);
        call.abort(err);
      } else inbound.end();
      return;
    }
    if (inbound.full) return inbound.whenSpace();
  }

  /** A stream is over; a call still running is cancelled. */
  closed(s: H2Stream): void {
    const call = s.user as GrpcCall | undefined;
    if (call === undefined) return;
    if (call.timer !== undefined) clearTimeout(call.timer);
    this.#calls.delete(call);
    if (!call.finished) {
      call.settle(Code.Canceled);
      call.abort(new BerthError(Code.Canceled, "context canceled"));
    }
  }

  // ---- calls ----

  #dispatch(call: GrpcCall): void {
    const count = call.count;
    if (count !== 1 || call.reader.pending !== 0) {
      this.#finish(
        call,
        new BerthError(
          count === 0 ? Code.Internal : Code.Unimplemented,
          count === 0
            ? "grpc: the request message is missing"
            : `grpc: ${count} request messages for a ${call.entry.kind} method`,
        ),
      );
      return;
    }
    const request = call.request!;
    call.request = undefined;
    if (call.entry.kind === "unary") this.#unary(call, request);
    else this.#serverStreaming(call, request);
  }

  #streaming(call: GrpcCall): void {
    const entry = call.entry;
    const inbound = new MessageQueue<unknown>(this.#queueSize);
    call.inbound = inbound;
    let out: unknown;
    try {
      out = entry.handler!.call(entry.self, inbound, call);
    } catch (err) {
      this.#finish(call, err);
      return;
    }
    if (entry.kind === "bidi_streaming") {
      this.#pumpOut(call, out);
    } else if (isThenable(out)) {
      Promise.resolve(out).then(
        (v) => this.#replyValue(call, v),
        (err) => this.#finish(call, err),
      );
    } else this.#replyValue(call, out);
  }

  #unary(call: GrpcCall, request: Uint8Array): void {
    let out: Uint8Array | Promise<Uint8Array>;
    try {
      out = callUnary(call.entry, request, call);
    } catch (err) {
      this.#finish(call, err);
      return;
    }
    if (out instanceof Uint8Array) this.#reply(call, out);
    else {
      out.then(
        (bytes) => this.#reply(call, bytes),
        (err) => this.#finish(call, err),
      );
    }
  }

  #serverStreaming(call: GrpcCall, request: Uint8Array): void {
    let out: unknown;
    try {
      out = call.entry.handler!.call(call.entry.self, decodeInput(call.entry, request), call);
    } catch (err) {
      this.#finish(call, err);
      return;
    }
    this.#pumpOut(call, out);
  }

  #replyValue(call: GrpcCall, value: unknown): void {
    let bytes: Uint8Array;
    try {
      bytes = encodeOutput(call.entry, value);
    } catch (err) {
      this.#finish(call, err);
      return;
    }
    this.#reply(call, bytes);
  }

  /** Sends one message and an OK status. */
  #reply(call: GrpcCall, bytes: Uint8Array): void {
    if (call.finished) return;
    try {
      this.#checkSend(call, bytes);
    } catch (err) {
      this.#finish(call, err);
      return;
    }
    call.settle(Code.OK);
    call.inbound?.end();
    const s = call.stream;
    this.#sendHeaders(call);
    s.conn.write(s, frameMessage(bytes));
    s.conn.end(s, OK_TRAILERS);
  }

  /** Streams a handler's output messages, then the status. */
  async #pumpOut(call: GrpcCall, out: unknown): Promise<void> {
    const s = call.stream;
    try {
      if (out === null || typeof out !== "object" || !(Symbol.asyncIterator in out)) {
        throw new BerthError(
          Code.Internal,
          `handler ${call.service}/${call.method} did not return an async iterable`,
        );
      }
      for await (const msg of out as AsyncIterable<unknown>) {
        if (call.finished) break;
        const bytes = encodeOutput(call.entry, msg);
        this.#checkSend(call, bytes);
        this.#sendHeaders(call);
        s.conn.write(s, frameMessage(bytes));
        if (!s.conn.writable(s)) await s.conn.whenWritable(s);
      }
    } catch (err) {
      this.#finish(call, err);
      return;
    }
    this.#finish(call, undefined);
  }

  #checkSend(call: GrpcCall, bytes: Uint8Array): void {
    if (bytes.length > this.#maxSend) {
      throw new BerthError(
        Code.ResourceExhausted,
        `grpc: ${call.service}/${call.method} answer of ${bytes.length} bytes is larger than max (${this.#maxSend})`,
      );
    }
  }

  #sendHeaders(call: GrpcCall): void {
    if (call.headersSent) return;
    call.headersSent = true;
    call.stream.conn.respond(call.stream, RESPONSE_HEADERS, false);
  }

  /** Ends the call with `err`'s status, or OK when there is none. */
  #finish(call: GrpcCall, err: unknown): void {
    if (call.finished) return;
    const e = err === undefined ? undefined : toBerthError(err);
    call.settle(e?.code ?? Code.OK);
    call.inbound?.end();
    const s = call.stream;
    if (s.gone) return;
    if (e !== undefined && (e.code === Code.Unknown || e.code === Code.Internal)) {
      log.debug("grpc: handler failed", {
        method: `${call.service}/${call.method}`,
        error: e.message,
      });
    }
    if (!call.headersSent) {
      call.headersSent = true;
      s.conn.respond(s, trailersOnly(e), true);
      return;
    }
    s.conn.end(s, e === undefined ? OK_TRAILERS : statusBlock(e));
  }
}

/** What serves a refused connection: every call is answered with the refusal, nothing runs. */
function refusedHandler(refusal: BerthError): H2Handler {
  const answer = trailersOnly(refusal);
  return {
    request: (s) => s.conn.respond(s, answer, true),
    data: () => {},
    closed: () => {},
  };
}

/** A trailers-only response: the whole answer is a status. */
function trailersOnly(err: BerthError | undefined): Uint8Array {
  const fields = [...RESPONSE_FIELDS, "grpc-status", String(err?.code ?? 0)];
  if (err !== undefined && err.message !== "") {
    fields.push("grpc-message", encodeStatusMessage(err.message));
  }
  return encodeHeaders(fields);
}

function statusBlock(err: BerthError): Uint8Array {
  const fields = ["grpc-status", String(err.code)];
  if (err.message !== "") fields.push("grpc-message", encodeStatusMessage(err.message));
  return encodeHeaders(fields);
}
