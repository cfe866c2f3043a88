/**
 * Port forwarding over SPDY (`portforward.k8s.io`): for every forwarded
 * connection the client opens two streams carrying the same `requestID`
 * and `port` headers, one of `streamType` data and one of error. Once both
 * exist the runtime connects the data stream to the port; a failure's text
 * goes to the error stream. Pairs that stay incomplete past the creation
 * timeout are reported on their error stream and dropped.
 * @module
 */

import { log } from "../log/mod.ts";
import type { SpdyConnection, SpdyStream } from "./spdy_conn.ts";
import type { StreamingRuntime } from "./types.ts";

/** Port forwarding's SPDY subprotocol. */
export const PORTFORWARD_PROTOCOLS = ["portforward.k8s.io"];

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  timer: ReturnType<typeof setTimeout>;
}

/** Parses a port header: an integer in 1..65535, or an error message. */
export function parsePort(text: string): number | string {
  if (text === "") return `"port" header is required`;
  if (!/^\d+$/.test(text)) return `unable to parse ${JSON.stringify(text)} as a port`;
  const port = Number(text);
  if (port < 1 || port > 65535) return `port ${JSON.stringify(text)} must be in 1..65535`;
  return port;
}

/** Serves one port-forward connection's streams for `podSandboxId`. */
export class PortForwardSession {
  #runtime: StreamingRuntime;
  #sandbox: string;
  #creationTimeoutMs: number;
  #pairs = new Map<string, Pair>();
  #active = new Set<Promise<void>>();

  /** Forwards to `podSandboxId`'s ports through `runtime`. */
  constructor(runtime: StreamingRuntime, podSandboxId: string, creationTimeoutMs: number) {
    this.#runtime = runtime;
    this.#sandbox = podSandboxId;
    this.#creationTimeoutMs = creationTimeoutMs;
  }

  /** The connection's stream handler. */
  accept = (stream: SpdyStream): string | undefined => {
    const port = parsePort(stream.header("port"));
    if (typeof port === "string") return port;
    const type = stream.header("streamType");
    if (type === "") return `"streamType" header is required`;
    if (type !== "data" && type !== "error") return `invalid stream type ${JSON.stringify(type)}`;
    // Clients before requestID derived the pair from the stream ids (error first, data next).
    const requestId = stream.header("requestID") ||
      String(type === "error" ? stream.id : stream.id - 2);
    let pair = this.#pairs.get(requestId);
    if (!pair) {
      const created: Pair = {
        timer: setTimeout(() => {
          this.#pairs.delete(requestId);
          const msg = `timed out waiting for streams of request ${requestId}`;
          log.warn("port forward: " + msg);
          void created.error?.write(new TextEncoder().encode(msg)).catch(() => {});
          void created.data?.reset();
          void created.error?.closeWrite().catch(() => {});
        }, this.#creationTimeoutMs),
      };
      pair = created;
      this.#pairs.set(requestId, pair);
    }
    if (pair[type]) {
      const msg =
        `error processing stream for request ${requestId}: ${type} stream already assigned`;
      void pair.error?.write(new TextEncoder().encode(msg)).catch(() => {});
      return msg;
    }
    pair[type] = stream;
    if (pair.data && pair.error) {
      clearTimeout(pair.timer);
      this.#pairs.delete(requestId);
      const run = this.#forward(port, pair.data, pair.error);
      this.#active.add(run);
      void run.finally(() => this.#active.delete(run));
    }
    return undefined;
  };

  async #forward(port: number, data: SpdyStream, error: SpdyStream): Promise<void> {
    try {
      await this.#runtime.portForward(this.#sandbox, port, {
        readable: data.readable,
        writable: data.writable(),
      });
    } catch (err) {
      const msg = `error forwarding port ${port} to pod ${this.#sandbox}: ${
        err instanceof Error ? err.message : String(err)
      }`;
      log.warn("port forward failed", { port, sandbox: this.#sandbox, error: msg });
      await error.write(new TextEncoder().encode(msg)).catch(() => {});
    } finally {
      await data.closeWrite().catch(() => {});
      await error.closeWrite().catch(() => {});
    }
  }

  /** Serves until the client closes the connection, then ends what is left. */
  async serve(conn: SpdyConnection): Promise<void> {
    await conn.serve();
    for (const pair of this.#pairs.values()) clearTimeout(pair.timer);
    this.#pairs.clear();
    await Promise.allSettled([...this.#active]);
  }
}
