/**
 * A gRPC server over cleartext HTTP/2 on a unix socket (node:http2), for
 * containerd's own clients (ctr, the Go client library). It serves the same
 * {@link ServiceSet} registrations and handlers as the ttrpc server: only
 * the transport differs. Unary, server-, client- and bidi-streaming calls;
 * status in `grpc-status`/`grpc-message` trailers (or a trailers-only
 * response when nothing was sent); `grpc-timeout` deadlines; request
 * headers as call metadata.
 *
 * @module
 */

import http2 from "node:http2";
import { BerthError, Code, toBerthError } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import {
  type CallContext,
  type Metadata,
  type RegisterOptions,
  removeStaleSocket,
  type ServiceImpl,
} from "../ttrpc/mod.ts";
import { MessageQueue } from "../ttrpc/queue.ts";
import {
  callUnary,
  decodeInput,
  encodeOutput,
  isThenable,
  type MethodEntry,
  ServiceSet,
} from "../ttrpc/services.ts";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import {
  encodeStatusMessage,
  frameMessage,
  MAX_GRPC_MESSAGE,
  MessageReader,
  parseTimeout,
} from "./framing.ts";

/** Options of {@link GrpcServer}. */
export interface GrpcServerOptions {
  /** Largest message accepted from a client (default 16 MiB, as containerd). */
  maxRecvMessageSize?: number;
  /** Largest message sent to a client (default 16 MiB, as containerd). */
  maxSendMessageSize?: number;
  /** Messages a streaming handler may have unread before the client is paused (default 64). */
  streamQueue?: number;
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

type Stream = http2.ServerHttp2Stream;

/** One call being served; it is the handler's {@link CallContext}. */
class GrpcCall implements CallContext {
  readonly metadata: Metadata;
  readonly deadline: number | undefined;
  /** Set once the status went out or the stream went away. */
  finished = false;
  /** The response headers went out (a later status travels in trailers). */
  headersSent = false;
  inbound: MessageQueue<unknown> | undefined;
  #ctrl: AbortController | undefined;
  #reason: BerthError | undefined;

  constructor(
    readonly service: string,
    readonly method: string,
    readonly entry: MethodEntry,
    headers: http2.IncomingHttpHeaders,
    timeoutMs: number | undefined,
  ) {
    const md: Metadata = new Map();
    for (const [k, v] of Object.entries(headers)) {
      if (k.startsWith(":") || RESERVED.has(k) || v === undefined) continue;
      md.set(k, Array.isArray(v) ? v : [v]);
    }
    this.metadata = md;
    this.deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
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

/** Serves registered services over gRPC on a unix socket. */
export class GrpcServer {
  #services = new ServiceSet();
  #server: http2.Http2Server;
  #sessions = new Set<http2.ServerHttp2Session>();
  #calls = new Set<GrpcCall>();
  #maxRecv: number;
  #maxSend: number;
  #queueSize: number;
  #listening = false;

  constructor(opts: GrpcServerOptions = {}) {
    this.#maxRecv = opts.maxRecvMessageSize ?? MAX_GRPC_MESSAGE;
    this.#maxSend = opts.maxSendMessageSize ?? MAX_GRPC_MESSAGE;
    this.#queueSize = opts.streamQueue ?? 64;
    this.#server = http2.createServer();
    this.#server.on("session", (session: http2.ServerHttp2Session) => {
      this.#sessions.add(session);
      session.on("close", () => this.#sessions.delete(session));
      // A peer that goes away mid-call is that call's business, not the server's.
      session.on("error", (err: Error) => log.debug("grpc: session error", { error: String(err) }));
    });
    this.#server.on(
      "stream",
      (stream: Stream, headers: http2.IncomingHttpHeaders) => this.#onStream(stream, headers),
    );
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

  /**
   * Listens on the unix socket `path`, made 0600. A stale socket file is
   * replaced; a live one is AlreadyExists.
   */
  async listen(path: string): Promise<void> {
    await removeStaleSocket(path);
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.#server.once("error", onError);
      this.#server.listen(path, () => {
        this.#server.off("error", onError);
        this.#listening = true;
        resolve();
      });
    });
    await Deno.chmod(path, 0o600);
  }

  /**
   * Stops accepting, lets calls in flight finish for up to `timeoutMs`,
   * then cancels what is left and closes every connection.
   */
  async shutdown(opts: { timeoutMs?: number } = {}): Promise<void> {
    const closed = this.#stopListening();
    for (const s of this.#sessions) s.close();
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    // Idle connections may stay open after GOAWAY: wait for the calls, not the sessions.
    while (this.#calls.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    await this.close();
    await closed;
  }

  /** Cancels every call and closes every connection now. */
  async close(): Promise<void> {
    const closed = this.#stopListening();
    for (const call of this.#calls) {
      call.abort(new BerthError(Code.Unavailable, "grpc: server closed"));
    }
    for (const s of this.#sessions) s.destroy();
    this.#sessions.clear();
    await closed;
  }

  #stopListening(): Promise<void> {
    if (!this.#listening) return Promise.resolve();
    this.#listening = false;
    return new Promise((resolve) => this.#server.close(() => resolve()));
  }

  #onStream(stream: Stream, headers: http2.IncomingHttpHeaders): void {
    stream.on("error", (err: Error) => log.debug("grpc: stream error", { error: String(err) }));
    const path = headers[":path"] ?? "";
    const ctype = headers["content-type"] ?? "";
    if (headers[":method"] !== "POST" || !ctype.startsWith("application/grpc")) {
      // Not a gRPC request at all: answer in HTTP terms, as gRPC servers do.
      stream.respond({ ":status": 415, "content-type": "text/plain" });
      stream.end("berth serves gRPC here (POST, content-type application/grpc)\n");
      return;
    }
    const slash = path.lastIndexOf("/");
    const service = path.slice(1, slash > 0 ? slash : 1);
    const method = path.slice(slash + 1);
    let entry: MethodEntry;
    let timeoutMs: number | undefined;
    try {
      if (slash <= 0) {
        throw new BerthError(Code.Unimplemented, `malformed method name ${JSON.stringify(path)}`);
      }
      entry = this.#services.lookup(service, method);
      timeoutMs = parseTimeout(headers["grpc-timeout"] as string | undefined);
    } catch (err) {
      trailersOnly(stream, toBerthError(err));
      return;
    }
    const call = new GrpcCall(service, method, entry, headers, timeoutMs);
    this.#calls.add(call);
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (timeoutMs !== undefined) {
      timer = setTimeout(() => {
        const err = new BerthError(Code.DeadlineExceeded, "context deadline exceeded");
        this.#finish(stream, call, err);
        call.abort(err);
      }, timeoutMs);
    }
    stream.on("close", () => {
      if (timer !== undefined) clearTimeout(timer);
      this.#calls.delete(call);
      if (!call.finished) {
        call.finished = true;
        call.abort(new BerthError(Code.Canceled, "context canceled"));
      }
    });

    const reader = new MessageReader(this.#maxRecv);
    if (entry.kind === "unary" || entry.kind === "server_streaming") {
      let request: Uint8Array | undefined;
      let count = 0;
      stream.on("data", (chunk: Uint8Array) => {
        if (call.finished) return;
        try {
          for (const m of reader.push(chunk)) {
            count++;
            request = m;
          }
        } catch (err) {
          this.#finish(stream, call, err);
        }
      });
      stream.on("end", () => {
        if (call.finished) return;
        if (count !== 1 || reader.pending !== 0) {
          this.#finish(
            stream,
            call,
            new BerthError(
              count === 0 ? Code.Internal : Code.Unimplemented,
              count === 0
                ? "grpc: the request message is missing"
                : `grpc: ${count} request messages for a ${entry.kind} method`,
            ),
          );
          return;
        }
        if (entry.kind === "unary") this.#unary(stream, call, request!);
        else this.#serverStreaming(stream, call, request!);
      });
      return;
    }

    // Client and bidi streaming: requests flow to the handler as they come,
    // and the client is paused while the handler has a queue full unread.
    const inbound = new MessageQueue<unknown>(this.#queueSize);
    call.inbound = inbound;
    stream.on("data", (chunk: Uint8Array) => {
      if (call.finished) return;
      try {
        for (const m of reader.push(chunk)) inbound.push(decodeInput(entry, m));
      } catch (err) {
        this.#finish(stream, call, err);
        call.abort(toBerthError(err));
        return;
      }
      if (inbound.full) {
        stream.pause();
        inbound.whenSpace().then(() => stream.resume());
      }
    });
    stream.on("end", () => inbound.end());
    let out: unknown;
    try {
      out = entry.handler!.call(entry.self, inbound, call);
    } catch (err) {
      this.#finish(stream, call, err);
      return;
    }
    if (entry.kind === "bidi_streaming") {
      this.#pumpOut(stream, call, out);
    } else if (isThenable(out)) {
      Promise.resolve(out).then(
        (v) => this.#reply(stream, call, () => encodeOutput(entry, v)),
        (err) => this.#finish(stream, call, err),
      );
    } else this.#reply(stream, call, () => encodeOutput(entry, out));
  }

  #unary(stream: Stream, call: GrpcCall, request: Uint8Array): void {
    let out: Uint8Array | Promise<Uint8Array>;
    try {
      out = callUnary(call.entry, request, call);
    } catch (err) {
      this.#finish(stream, call, err);
      return;
    }
    if (out instanceof Uint8Array) this.#reply(stream, call, () => out as Uint8Array);
    else {
      out.then(
        (bytes) => this.#reply(stream, call, () => bytes),
        (err) => this.#finish(stream, call, err),
      );
    }
  }

  #serverStreaming(stream: Stream, call: GrpcCall, request: Uint8Array): void {
    let out: unknown;
    try {
      out = call.entry.handler!.call(call.entry.self, decodeInput(call.entry, request), call);
    } catch (err) {
      this.#finish(stream, call, err);
      return;
    }
    this.#pumpOut(stream, call, out);
  }

  /** Sends one message and an OK status. */
  #reply(stream: Stream, call: GrpcCall, encode: () => Uint8Array): void {
    if (call.finished) return;
    let bytes: Uint8Array;
    try {
      bytes = encode();
      this.#checkSend(call, bytes);
    } catch (err) {
      this.#finish(stream, call, err);
      return;
    }
    if (stream.destroyed || stream.closed) return;
    this.#sendHeaders(stream, call);
    call.finished = true;
    stream.once("wantTrailers", () => sendStatus(stream, 0, ""));
    stream.end(frameMessage(bytes));
  }

  /** Streams a handler's output messages, then the status. */
  async #pumpOut(stream: Stream, call: GrpcCall, out: unknown): Promise<void> {
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
        this.#sendHeaders(stream, call);
        if (!stream.write(frameMessage(bytes))) {
          await new Promise<void>((resolve) => {
            const done = () => {
              stream.off("drain", done);
              stream.off("close", done);
              resolve();
            };
            stream.on("drain", done);
            stream.on("close", done);
          });
        }
      }
    } catch (err) {
      this.#finish(stream, call, err);
      return;
    }
    this.#finish(stream, call, undefined);
  }

  #checkSend(call: GrpcCall, bytes: Uint8Array): void {
    if (bytes.length > this.#maxSend) {
      throw new BerthError(
        Code.ResourceExhausted,
        `grpc: ${call.service}/${call.method} answer of ${bytes.length} bytes is larger than max (${this.#maxSend})`,
      );
    }
  }

  #sendHeaders(stream: Stream, call: GrpcCall): void {
    if (call.headersSent) return;
    call.headersSent = true;
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, {
      waitForTrailers: true,
    });
  }

  /** Ends the call with `err`'s status, or OK when there is none. */
  #finish(stream: Stream, call: GrpcCall, err: unknown): void {
    if (call.finished) return;
    call.finished = true;
    call.inbound?.end();
    if (stream.destroyed || stream.closed) return;
    const e = err === undefined ? undefined : toBerthError(err);
    if (e !== undefined && (e.code === Code.Unknown || e.code === Code.Internal)) {
      log.debug("grpc: handler failed", {
        method: `${call.service}/${call.method}`,
        error: e.message,
      });
    }
    if (!call.headersSent) {
      call.headersSent = true;
      trailersOnly(stream, e);
      return;
    }
    stream.once("wantTrailers", () => sendStatus(stream, e?.code ?? 0, e?.message ?? ""));
    stream.end();
  }
}

/** A response that is only a status (nothing else was sent). */
function trailersOnly(stream: Stream, err: BerthError | undefined): void {
  if (stream.destroyed || stream.closed) return;
  const headers: http2.OutgoingHttpHeaders = {
    ":status": 200,
    "content-type": "application/grpc",
    "grpc-status": String(err?.code ?? 0),
  };
  if (err !== undefined && err.message !== "") {
    headers["grpc-message"] = encodeStatusMessage(err.message);
  }
  stream.respond(headers, { endStream: true });
}

function sendStatus(stream: Stream, code: number, message: string): void {
  if (stream.destroyed || stream.closed) return;
  const trailers: http2.OutgoingHttpHeaders = { "grpc-status": String(code) };
  if (message !== "") trailers["grpc-message"] = encodeStatusMessage(message);
  stream.sendTrailers(trailers);
}
