/**
 * A gRPC client over HTTP/2 (node:http2) on a unix socket or TCP, typed
 * by protobuf-es method descriptors: unary calls and streams of every kind.
 * What berth's tests and benchmarks use to talk gRPC to a daemon (berth's
 * or containerd's); berth's own client speaks ttrpc.
 *
 * @example
 * ```ts
 * const client = new GrpcClient("/run/berth/berth.sock", { metadata: { "containerd-namespace": "default" } });
 * const v = await client.unary(Version.method.version, {});
 * client.close();
 * ```
 * @module
 */

import type http2 from "node:http2";
import {
  create,
  type DescMethod,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { BerthError, Code } from "../errdefs/mod.ts";
import { errorFromStatus, MessageQueue } from "../rpc/mod.ts";
import {
  decodeStatusMessage,
  formatTimeout,
  frameMessage,
  gzipMessage,
  MessageReader,
} from "./framing.ts";

// Loaded when a client is made: a static node: import would be evaluated at
// every start of the bundle, in every mode, though only tests and benches
// make gRPC clients (~45 ms).
let nodeHttp2: typeof import("node:http2") | undefined;
const h2 = () =>
  nodeHttp2 ??= process.getBuiltinModule("node:http2") as typeof import("node:http2");

/** Options of one call. */
export interface GrpcCallOptions {
  /** Extra request headers (metadata), added to the client's. */
  metadata?: Record<string, string>;
  /** Deadline for the whole call; sent as grpc-timeout and enforced here. */
  timeoutMs?: number;
  /** Cancels the call. */
  signal?: AbortSignal;
  /** Sends the requests gzip-compressed (`grpc-encoding: gzip`), as grpc-go's UseCompressor does. */
  gzip?: boolean;
}

/** Options of {@link GrpcClient}. */
export interface GrpcClientOptions {
  /** Headers sent with every call (e.g. containerd-namespace). */
  metadata?: Record<string, string>;
  /** For a `tcp://` address: TLS, trusting `ca` (PEM), checking the name `servername`. */
  tls?: { ca: string; servername?: string };
}

type In<M extends DescMethod> = M["input"];
type Out<M extends DescMethod> = M["output"];

/** One HTTP/2 connection to a gRPC server on a unix socket or TCP. */
export class GrpcClient {
  #session: http2.ClientHttp2Session;
  #metadata: Record<string, string>;
  #active = 0;

  /**
   * `address` is a unix socket path (optionally `unix://`), or
   * `tcp://host:port` (TLS with `opts.tls`, else plaintext).
   */
  constructor(address: string, opts: GrpcClientOptions = {}) {
    this.#metadata = opts.metadata ?? {};
    if (address.startsWith("tcp://")) {
      const hostPort = address.slice("tcp://".length);
      this.#session = opts.tls === undefined
        ? h2().connect(`http://${hostPort}`)
        : h2().connect(`https://${hostPort}`, {
          ca: opts.tls.ca,
          servername: opts.tls.servername,
        });
    } else {
      const path = address.startsWith("unix://") ? address.slice("unix://".length) : address;
      const net = process.getBuiltinModule("node:net") as typeof import("node:net");
      this.#session = h2().connect("http://localhost", {
        createConnection: () => net.connect(path),
      });
    }
    // Failures reach the calls; the session's own error event must not crash the process.
    this.#session.on("error", () => {});
  }

  /** Calls a unary method; rejects with the server's status as a BerthError. */
  async unary<M extends DescMethod>(
    method: M,
    request: MessageInitShape<In<M>>,
    opts: GrpcCallOptions = {},
  ): Promise<MessageShape<Out<M>>> {
    let answer: MessageShape<Out<M>> | undefined;
    for await (const msg of this.stream(method, [request], opts)) answer = msg;
    if (answer === undefined) {
      throw new BerthError(Code.Internal, `grpc: ${pathOf(method)} answered no message`);
    }
    return answer;
  }

  /**
   * Calls a method of any kind: sends `requests` (exactly one for unary and
   * server-streaming methods) and yields the answers. A non-OK status is
   * thrown as a BerthError after the answers that came before it.
   */
  stream<M extends DescMethod>(
    method: M,
    requests: Iterable<MessageInitShape<In<M>>> | AsyncIterable<MessageInitShape<In<M>>>,
    opts: GrpcCallOptions = {},
  ): AsyncIterable<MessageShape<Out<M>>> {
    const headers: http2.OutgoingHttpHeaders = {
      ":method": "POST",
      ":path": pathOf(method),
      "content-type": "application/grpc",
      "te": "trailers",
      ...this.#metadata,
      ...opts.metadata,
    };
    if (opts.timeoutMs !== undefined) headers["grpc-timeout"] = formatTimeout(opts.timeoutMs);
    if (opts.gzip) headers["grpc-encoding"] = "gzip";
    // A caller that stops reading early cancels the call.
    const answers = new MessageQueue<MessageShape<Out<M>>>(
      Infinity,
      () => fail(new BerthError(Code.Canceled, "grpc: call abandoned")),
    );
    const req = this.#session.request(headers);
    this.#active++;
    const reader = new MessageReader();
    let code: number | undefined;
    let message = "";
    let failed = false;
    const fail = (err: BerthError) => {
      if (failed) return;
      failed = true;
      answers.fail(err);
      if (!req.closed) req.close(h2().constants.NGHTTP2_CANCEL);
    };
    const takeStatus = (h: http2.IncomingHttpHeaders) => {
      if (h["grpc-status"] !== undefined) {
        code = Number(h["grpc-status"]);
        message = decodeStatusMessage(String(h["grpc-message"] ?? ""));
      }
    };
    let timer: ReturnType<typeof setTimeout> | undefined;
    if (opts.timeoutMs !== undefined) {
      timer = setTimeout(
        () => fail(new BerthError(Code.DeadlineExceeded, "grpc: deadline exceeded")),
        opts.timeoutMs,
      );
    }
    const onAbort = () => fail(new BerthError(Code.Canceled, "grpc: call canceled"));
    opts.signal?.addEventListener("abort", onAbort, { once: true });
    req.on("response", (h: http2.IncomingHttpHeaders) => {
      if (Number(h[":status"]) !== 200) {
        fail(new BerthError(Code.Unknown, `grpc: HTTP status ${h[":status"]}`));
        return;
      }
      if (h["grpc-encoding"] === "gzip") reader.encoding = "gzip";
      takeStatus(h);
    });
    req.on("trailers", takeStatus);
    req.on("data", (chunk: Uint8Array) => {
      try {
        for (const m of reader.push(chunk)) {
          answers.push(fromBinary(method.output, m) as MessageShape<Out<M>>);
        }
      } catch (err) {
        fail(err instanceof BerthError ? err : new BerthError(Code.Internal, String(err)));
      }
    });
    req.on("error", (err: Error) => fail(new BerthError(Code.Unavailable, `grpc: ${err.message}`)));
    req.on("close", () => {
      this.#active--;
      clearTimeout(timer);
      opts.signal?.removeEventListener("abort", onAbort);
      if (failed) return;
      if (code === undefined) {
        fail(
          new BerthError(
            Code.Unavailable,
            `grpc: ${pathOf(method)}: stream ended without a status`,
          ),
        );
      } else if (code !== 0) fail(errorFromStatus(code, message));
      else answers.end();
    });
    (async () => {
      try {
        for await (const r of requests) {
          if (failed) return;
          const message = toBinary(method.input, create(method.input, r));
          const bytes = opts.gzip
            ? frameMessage(gzipMessage(message), true)
            : frameMessage(message);
          if (!req.write(bytes)) await new Promise((r) => req.once("drain", r));
        }
        if (!failed) req.end();
      } catch (err) {
        fail(new BerthError(Code.Canceled, `grpc: sending requests failed: ${String(err)}`));
      }
    })();
    return answers;
  }

  /** Closes the connection; calls still pending after a second are cut. */
  close(): Promise<void> {
    if (this.#active === 0 || this.#session.destroyed) {
      this.#session.destroy();
      return Promise.resolve();
    }
    return closeSession(this.#session);
  }
}

/** Closes an HTTP/2 client session gracefully; streams still open after `graceMs` are cut. */
export function closeSession(session: http2.ClientHttp2Session, graceMs = 1000): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      session.destroy();
      resolve();
    }, graceMs);
    session.close(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}

/** The HTTP/2 path of a method: /package.Service/Method. */
export function pathOf(method: DescMethod): string {
  return `/${method.parent.typeName}/${method.name}`;
}
