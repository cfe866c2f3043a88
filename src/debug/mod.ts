/**
 * The debug endpoint: `[debug] address` serves a private unix socket (0600,
 * owned by `debug.uid`/`debug.gid`) with what containerd's pprof handlers
 * give, in Deno's terms:
 *
 * - `GET /debug/heap`: a heap snapshot (.heapsnapshot, Chrome DevTools' Memory panel)
 * - `GET /debug/profile?seconds=N`: a CPU profile of N seconds (.cpuprofile)
 * - `GET /debug/requests`: the RPC calls in flight, with their age (JSON)
 *
 * The daemon imports this module only when a debug address is configured.
 * `berth debug heap|profile|requests` are the client side.
 * @module
 */

import { Code, toBerthError } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { removeStaleSocket } from "../rpc/mod.ts";
import { InFlight } from "./inflight.ts";
import { cpuProfile, heapSnapshot } from "./profile.ts";

export { InFlight, type InFlightCall } from "./inflight.ts";
export { cpuProfile, heapSnapshot, MAX_PROFILE_SECONDS } from "./profile.ts";

/** HTTP statuses for the errors the handlers raise; anything else is 500. */
const HTTP_STATUS: Partial<Record<Code, number>> = {
  [Code.InvalidArgument]: 400,
  [Code.NotFound]: 404,
  [Code.FailedPrecondition]: 409,
  [Code.Unimplemented]: 501,
};

function errorResponse(err: unknown): Response {
  const e = toBerthError(err);
  return Response.json({ code: e.code, message: e.message }, {
    status: HTTP_STATUS[e.code] ?? 500,
  });
}

/** The debug socket's server. */
export class DebugEndpoint {
  /** Calls in flight; give `inflight.observer(name)` to each RPC server. */
  readonly inflight = new InFlight();
  #server: Deno.HttpServer<Deno.UnixAddr> | undefined;
  #path = "";
  #ino: number | null = null;
  // Ends a CPU profile in progress when the endpoint closes, so the daemon's stop never waits on one.
  #closing = new AbortController();

  /**
   * Listens on `path`, 0600, owned by `uid`/`gid`: a stale socket is
   * replaced, a live one is AlreadyExists; a missing directory is made 0700.
   */
  async listen(path: string, uid: number, gid: number): Promise<void> {
    const dir = path.slice(0, path.lastIndexOf("/")) || "/";
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    await removeStaleSocket(path);
    await new Promise<void>((resolve) => {
      this.#server = Deno.serve({
        path,
        onListen: () => resolve(),
        onError: (err) => errorResponse(err),
      }, (req) => this.#handle(req));
    });
    this.#path = path;
    await Deno.chmod(path, 0o600);
    this.#ino = (await Deno.lstat(path)).ino;
    if (uid !== 0 || gid !== 0) await Deno.chown(path, uid, gid);
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    try {
      switch (url.pathname) {
        case "/debug/heap":
          return new Response(await heapSnapshot(), {
            headers: { "content-type": "application/json" },
          });
        case "/debug/profile": {
          const seconds = Number(url.searchParams.get("seconds") ?? "30");
          log.info("debug: taking a CPU profile", { seconds });
          return Response.json(await cpuProfile(seconds, this.#closing.signal));
        }
        case "/debug/requests":
          return Response.json({ requests: this.inflight.list() });
        default:
          return Response.json({
            message: "unknown path; try /debug/heap, /debug/profile?seconds=N, /debug/requests",
          }, { status: 404 });
      }
    } catch (err) {
      return errorResponse(err);
    }
  }

  /** Stops listening and removes the socket. */
  async close(): Promise<void> {
    this.#closing.abort();
    await this.#server?.shutdown();
    this.#server = undefined;
    // Only our own socket file: another daemon may have replaced it meanwhile.
    try {
      if (this.#path && (await Deno.lstat(this.#path)).ino === this.#ino) {
        await Deno.remove(this.#path);
      }
    } catch { /* already gone */ }
  }
}
