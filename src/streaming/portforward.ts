/**
 * Port forwarding over SPDY (`portforward.k8s.io`): for every forwarded
 * connection the client opens two streams carrying the same `requestID`
 * and `port` headers, one of `streamType` data and one of error. Once both
 * exist the runtime connects the data stream to the port; a failure's text
 * goes to the error stream. Pairs that stay incomplete past the creation
 * timeout are reported on their error stream and dropped.
 *
 * Over a websocket the ports are fixed up front (the CRI request's, else the
 * `port` query parameters): port i gets channel 2i for data and 2i+1 for
 * errors, each opened by a message carrying the port (16 bits, little
 * endian); a channel has no half-close, so the client's side of a port ends
 * when the runtime's side does.
 * @module
 */

import { log } from "../log/mod.ts";
import type { ByteConn, RequestHead } from "./http.ts";
import type { SpdyConnection, SpdyStream } from "./spdy_conn.ts";
import type { StreamingRuntime } from "./types.ts";
import { ChannelMux, upgradeWebSocket } from "./websocket.ts";

/** Port forwarding's SPDY subprotocol. */
export const PORTFORWARD_PROTOCOLS = ["portforward.k8s.io"];
/** Port forwarding's websocket subprotocol (binary channels; none offered means the same). */
export const WEBSOCKET_PORTFORWARD_PROTOCOLS = ["v4.channel.k8s.io"];

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

/** The ports of a websocket port-forward: `ports` if any, else the `port` query values. */
export function websocketPorts(ports: number[], query: URLSearchParams): number[] | string {
  if (ports.length > 0) return ports;
  const values = query.getAll("port").flatMap((v) => v.split(","));
  if (values.length === 0) return `query parameter "port" is required`;
  const out = [];
  for (const v of values) {
    const port = parsePort(v);
    if (typeof port === "string") return port;
    out.push(port);
  }
  return out;
}

/** Serves a port-forward websocket for `ports` of `podSandboxId` until every port is done. */
export async function serveWebSocketPortForward(
  conn: ByteConn,
  head: RequestHead,
  ports: number[],
  runtime: StreamingRuntime,
  podSandboxId: string,
): Promise<void> {
  const up = await upgradeWebSocket(conn, head, WEBSOCKET_PORTFORWARD_PROTOCOLS, "");
  if (!up) return;
  const mux = new ChannelMux(up.ws, false);
  const forwards = ports.map(async (port, i) => {
    const data = 2 * i;
    const errors = data + 1;
    const readable = mux.input(data);
    const portBytes = new Uint8Array([port & 0xff, port >> 8]);
    try {
      await mux.send(data, portBytes);
      await mux.send(errors, portBytes);
      await runtime.portForward(podSandboxId, port, {
        readable,
        writable: mux.output(data, () => mux.endInput(data)),
      });
    } catch (err) {
      const msg = `error forwarding port ${port} to pod ${podSandboxId}: ${
        err instanceof Error ? err.message : String(err)
      }`;
      log.warn("port forward failed", { port, sandbox: podSandboxId, error: msg });
      await mux.send(errors, new TextEncoder().encode(msg)).catch(() => {});
    } finally {
      mux.endInput(data);
    }
  });
  await Promise.allSettled(forwards);
  await mux.close();
}
