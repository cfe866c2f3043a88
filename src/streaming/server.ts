/**
 * The streaming server: the CRI plugin's Exec, Attach and PortForward
 * answer with a URL made here (`http://host:port/exec/<token>`), and the
 * client (crictl, the kubelet) connects to it and upgrades the connection
 * to SPDY/3.1 or a websocket. Each token is good for one connection within
 * its lifetime; an unknown or used token is answered 404.
 * @module
 */

import { BerthError, Code, invalidArgument } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import type {
  AttachRequest,
  ExecRequest,
  PortForwardRequest,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import {
  type ByteConn,
  headerList,
  IdleConn,
  readRequestHead,
  type RequestHead,
  writeResponse,
  writeSwitchingProtocols,
} from "./http.ts";
import {
  PORTFORWARD_PROTOCOLS,
  PortForwardSession,
  serveWebSocketPortForward,
  websocketPorts,
} from "./portforward.ts";
import {
  type Channels,
  type Outcome,
  REMOTECOMMAND_PROTOCOLS,
  runSession,
  SpdySessionStreams,
} from "./remotecommand.ts";
import { SpdyConnection } from "./spdy_conn.ts";
import { TokenCache } from "./tokens.ts";
import type { StreamingRuntime, StreamOptions } from "./types.ts";
import { isWebSocketRequest, openWebSocketChannels } from "./websocket.ts";

/** The request fields the server keeps for an exec URL. */
export type ExecParams = Pick<
  ExecRequest,
  "containerId" | "cmd" | "tty" | "stdin" | "stdout" | "stderr"
>;
/** The request fields the server keeps for an attach URL. */
export type AttachParams = Pick<
  AttachRequest,
  "containerId" | "tty" | "stdin" | "stdout" | "stderr"
>;
/** The request fields the server keeps for a port-forward URL. */
export type PortForwardParams = Pick<PortForwardRequest, "podSandboxId" | "port">;

type Pending =
  | { kind: "exec"; req: ExecParams }
  | { kind: "attach"; req: AttachParams }
  | { kind: "portforward"; req: PortForwardParams };

/** Options of {@link StreamServer}. */
export interface StreamServerOptions {
  /** The address to listen on (default, and when empty, 127.0.0.1). */
  address?: string;
  /** The TCP port (default 0: a free port). */
  port?: number;
  /** What serves the streams. */
  runtime: StreamingRuntime;
  /** How long a URL stays valid (default one minute, as containerd). */
  tokenTtlMs?: number;
  /** How long a client may take to open its streams (default 30 s, as the kubelet). */
  streamCreationTimeoutMs?: number;
  /** Close a connection idle this long (default 4 h, containerd's stream_idle_timeout; 0: never). */
  streamIdleTimeoutMs?: number;
}

function validateStreams(r: { tty: boolean; stdin: boolean; stdout: boolean; stderr: boolean }) {
  if (r.tty && r.stderr) throw invalidArgument("tty and stderr cannot both be true");
  if (!r.stdin && !r.stdout && !r.stderr) {
    throw invalidArgument("one of stdin, stdout, or stderr must be set");
  }
}

/** Serves exec, attach and port-forward sessions behind one-time URLs. */
export class StreamServer {
  #opts: Required<StreamServerOptions>;
  #tokens: TokenCache<Pending>;
  #listener: Deno.TcpListener | undefined;
  #conns = new Set<IdleConn>();
  #handlers = new Set<Promise<void>>();
  #acceptLoop: Promise<void> | undefined;
  #baseUrl = "";

  /** Configures the server; {@link start} listens. */
  constructor(opts: StreamServerOptions) {
    // `??` per field: an explicit undefined (an unset config key) keeps the default.
    this.#opts = {
      runtime: opts.runtime,
      address: opts.address || "127.0.0.1",
      port: opts.port ?? 0,
      tokenTtlMs: opts.tokenTtlMs ?? 60_000,
      streamCreationTimeoutMs: opts.streamCreationTimeoutMs ?? 30_000,
      streamIdleTimeoutMs: opts.streamIdleTimeoutMs ?? 4 * 3600_000,
    };
    this.#tokens = new TokenCache(this.#opts.tokenTtlMs);
  }

  /** Listens on the configured address; the URL base is known from then on. */
  start(): void {
    if (this.#listener) {
      throw new BerthError(Code.FailedPrecondition, "streaming server already started");
    }
    try {
      this.#listener = Deno.listen({ hostname: this.#opts.address, port: this.#opts.port });
    } catch (err) {
      throw new BerthError(
        Code.Unavailable,
        `streaming server: listen on ${this.#opts.address}:${this.#opts.port}: ${err}`,
        { cause: err },
      );
    }
    const addr = this.#listener.addr;
    const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
    this.#baseUrl = `http://${host}:${addr.port}`;
    this.#acceptLoop = this.#accept(this.#listener);
    log.info("streaming server listening", { url: this.#baseUrl });
  }

  /** The listening address, e.g. `{ hostname: "127.0.0.1", port: 40123 }`. */
  get addr(): Deno.NetAddr {
    if (!this.#listener) {
      throw new BerthError(Code.FailedPrecondition, "streaming server not started");
    }
    return this.#listener.addr;
  }

  /** A one-time URL for `req` (containerd's GetExec); InvalidArgument for bad requests. */
  getExec(req: ExecParams): string {
    if (req.containerId === "") throw invalidArgument("missing required container_id");
    if (req.cmd.length === 0) throw invalidArgument("cmd must not be empty");
    validateStreams(req);
    return this.#url({ kind: "exec", req: { ...req, cmd: [...req.cmd] } });
  }

  /** A one-time URL for `req` (containerd's GetAttach). */
  getAttach(req: AttachParams): string {
    if (req.containerId === "") throw invalidArgument("missing required container_id");
    validateStreams(req);
    return this.#url({ kind: "attach", req: { ...req } });
  }

  /** A one-time URL for `req` (containerd's GetPortForward). */
  getPortForward(req: PortForwardParams): string {
    if (req.podSandboxId === "") throw invalidArgument("missing required pod_sandbox_id");
    return this.#url({ kind: "portforward", req: { ...req, port: [...req.port] } });
  }

  #url(p: Pending): string {
    if (!this.#listener) {
      throw new BerthError(Code.FailedPrecondition, "streaming server not started");
    }
    return `${this.#baseUrl}/${p.kind}/${this.#tokens.insert(p)}`;
  }

  async #accept(listener: Deno.TcpListener): Promise<void> {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // closed
      }
      const idle = new IdleConn(conn, this.#opts.streamIdleTimeoutMs);
      this.#conns.add(idle);
      const h = this.#serveConn(idle).catch((err) => {
        log.debug("streaming connection failed", { error: String(err) });
      }).finally(() => {
        this.#conns.delete(idle);
        idle.close();
      });
      this.#handlers.add(h);
      void h.finally(() => this.#handlers.delete(h));
    }
  }

  async #serveConn(conn: ByteConn): Promise<void> {
    let head: RequestHead | null;
    try {
      head = await readRequestHead(conn);
    } catch (err) {
      await writeResponse(
        conn,
        400,
        "Bad Request",
        err instanceof Error ? err.message : String(err),
      );
      return;
    }
    if (head === null) return;
    const m = /^\/(exec|attach|portforward)\/([A-Za-z0-9_-]+)$/.exec(head.path);
    if (!m || (head.method !== "GET" && head.method !== "POST")) {
      await writeResponse(conn, 404, "Not Found", "404 page not found\n");
      return;
    }
    const pending = this.#tokens.consume(m[2]);
    if (!pending || pending.kind !== m[1]) {
      await writeResponse(conn, 404, "Not Found", "404 page not found\n");
      return;
    }
    if (pending.kind === "portforward") return this.#servePortForward(conn, head, pending.req);
    const opts: StreamOptions = {
      stdin: pending.req.stdin,
      stdout: pending.req.stdout,
      stderr: pending.req.stderr,
      tty: pending.req.tty,
    };
    const channels = await this.#openChannels(conn, head, opts);
    if (!channels) return;
    const runtime = this.#opts.runtime;
    if (pending.kind === "exec") {
      const req = pending.req;
      await runSession(channels, async (io): Promise<Outcome> => {
        const { exitCode } = await runtime.exec(req.containerId, req.cmd, io);
        return exitCode === 0 ? { kind: "success" } : { kind: "exit", exitCode };
      });
    } else {
      const req = pending.req;
      await runSession(channels, async (io): Promise<Outcome> => {
        await runtime.attach(req.containerId, io);
        return { kind: "success" };
      });
    }
  }

  /** Upgrades to a websocket or to SPDY and waits for the client's streams. */
  async #openChannels(
    conn: ByteConn,
    head: RequestHead,
    opts: StreamOptions,
  ): Promise<Channels | undefined> {
    if (isWebSocketRequest(head)) {
      return await openWebSocketChannels(conn, head, opts);
    }
    const protocol = await this.#spdyHandshake(conn, head, REMOTECOMMAND_PROTOCOLS);
    if (protocol === undefined) return undefined;
    const streams = new SpdySessionStreams(protocol, opts);
    const spdy = new SpdyConnection(conn, head.rest, streams.accept);
    void spdy.serve();
    return await streams.ready(spdy, this.#opts.streamCreationTimeoutMs);
  }

  async #servePortForward(conn: ByteConn, head: RequestHead, req: PortForwardParams) {
    if (isWebSocketRequest(head)) {
      const ports = websocketPorts(req.port, head.query);
      if (typeof ports === "string") {
        await writeResponse(conn, 400, "Bad Request", ports);
        return;
      }
      await serveWebSocketPortForward(conn, head, ports, this.#opts.runtime, req.podSandboxId);
      return;
    }
    const protocol = await this.#spdyHandshake(conn, head, PORTFORWARD_PROTOCOLS);
    if (protocol === undefined) return;
    const session = new PortForwardSession(
      this.#opts.runtime,
      req.podSandboxId,
      this.#opts.streamCreationTimeoutMs,
    );
    const spdy = new SpdyConnection(conn, head.rest, session.accept);
    await session.serve(spdy);
  }

  /**
   * The kubelet's upgrade handshake: SPDY/3.1 requested, a subprotocol
   * negotiated from X-Stream-Protocol-Version (the client's order wins).
   * Answers failures itself and returns undefined then.
   */
  async #spdyHandshake(
    conn: ByteConn,
    head: RequestHead,
    supported: string[],
  ): Promise<string | undefined> {
    const upgrade = headerList(head, "upgrade").map((v) => v.toLowerCase());
    const connection = headerList(head, "connection").map((v) => v.toLowerCase());
    if (!connection.includes("upgrade") || !upgrade.includes("spdy/3.1")) {
      await writeResponse(
        conn,
        400,
        "Bad Request",
        "unable to upgrade: missing upgrade headers in request (Connection: Upgrade, Upgrade: SPDY/3.1)",
      );
      return undefined;
    }
    const offered = headerList(head, "x-stream-protocol-version");
    if (offered.length === 0) {
      await writeResponse(
        conn,
        400,
        "Bad Request",
        "unable to upgrade: X-Stream-Protocol-Version is required",
      );
      return undefined;
    }
    const chosen = offered.find((p) => supported.includes(p));
    if (chosen === undefined) {
      await writeResponse(
        conn,
        403,
        "Forbidden",
        `unable to upgrade: unable to negotiate protocol: client supports [${
          offered.join(" ")
        }], server accepts [${supported.join(" ")}]`,
        supported.map((p) => ["X-Accepted-Stream-Protocol-Versions", p]),
      );
      return undefined;
    }
    await writeSwitchingProtocols(conn, [
      ["Connection", "Upgrade"],
      ["Upgrade", "SPDY/3.1"],
      ["X-Stream-Protocol-Version", chosen],
    ]);
    return chosen;
  }

  /**
   * Stops listening and closes every connection, which ends the sessions'
   * streams; then waits up to `graceMs` for the runtime's calls to return
   * (an exec whose process ignores its closed streams keeps running).
   */
  async close(graceMs = 5000): Promise<void> {
    try {
      this.#listener?.close();
    } catch { /* already closed */ }
    await this.#acceptLoop;
    for (const c of this.#conns) c.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const grace = new Promise<boolean>((r) => timer = setTimeout(() => r(false), graceMs));
    const settled = Promise.allSettled([...this.#handlers]).then(() => true);
    const allDone = await Promise.race([settled, grace]);
    clearTimeout(timer);
    if (!allDone) {
      log.warn("streaming server closed with runtime calls still running", {
        running: this.#handlers.size,
      });
    }
  }
}
