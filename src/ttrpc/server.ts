/**
 * The ttrpc server: accepts unix-socket connections and serves every call
 * on each connection concurrently, unary and streaming. Bad input from a
 * peer (malformed envelopes or payloads, unknown frame types, oversized
 * frames, reused stream ids) gets an error status on its stream or ends that
 * connection; it never takes the server down.
 *
 * @example
 * ```ts
 * const server = new Server();
 * server.register(Task, impl);
 * server.register(Task, impl, { name: "containerd.task.v3.Task" });
 * await server.listen("/run/berth/s/abc");
 * // ...
 * await server.shutdown({ timeoutMs: 5000 });
 * ```
 * @module
 */

import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import {
  acceptEach,
  isThenable,
  listenPrivate,
  type MethodEntry,
  type RegisterOptions,
  type ServiceImpl,
  ServiceSet,
} from "../rpc/mod.ts";
import { type ConnectionOptions, ServerConnection } from "./connection.ts";

/** Options of {@link Server}. */
export interface ServerOptions extends ConnectionOptions {
  /**
   * Vets each accepted connection before anything is read from it; throwing
   * (or rejecting) refuses and closes the connection. It is called right
   * after the accept, before the next one. See peercred.ts (same-user check).
   */
  authorize?: (conn: Deno.UnixConn) => unknown;
}

/** Options of {@link Server.shutdown}. */
export interface ShutdownOptions {
  /** Give in-flight calls this long to finish, then close (default 10 s). */
  timeoutMs?: number;
}

/** A ttrpc server; see the module documentation. */
export class Server {
  #services = new ServiceSet();
  #opts: ServerOptions;
  #listeners = new Set<Deno.Listener>();
  #serving = new Set<Promise<void>>();
  #conns = new Set<ServerConnection>();
  #closing = false;
  #allClosed: Array<() => void> = [];

  /** Makes a server with no services yet. */
  constructor(opts: ServerOptions = {}) {
    this.#opts = opts;
  }

  /**
   * Serves `impl` as `service` (or as `opts.name`). The same implementation
   * may be registered under several names.
   */
  register<S extends GenService<GenServiceMethods>>(
    service: S,
    impl: ServiceImpl<S>,
    opts?: RegisterOptions,
  ): void {
    this.#services.register(service, impl, opts);
  }

  /** Number of open connections. */
  get connections(): number {
    return this.#conns.size;
  }

  /**
   * Listens on the unix socket `path` and serves it in the background. A
   * stale socket file (nothing answering) is replaced; a live one is
   * AlreadyExists. The socket is made 0600 (under the usual umask it is
   * never writable by others, even before the chmod); keep its directory
   * 0700 too. The file is removed when the server closes.
   */
  async listen(path: string): Promise<void> {
    if (this.#closing) throw new BerthError(Code.Unavailable, "ttrpc: server is shut down");
    const { listener, removeFile } = await listenPrivate(path);
    const done = this.serve(listener).catch((err) => {
      log.error("ttrpc: serving stopped", { path, error: String(err) });
    }).finally(removeFile);
    this.#serving.add(done);
    done.finally(() => this.#serving.delete(done));
  }

  /** Accepts and serves connections from `listener` until it is closed. */
  async serve(listener: Deno.Listener<Deno.UnixConn> | Deno.UnixListener): Promise<void> {
    if (this.#closing) {
      listener.close();
      throw new BerthError(Code.Unavailable, "ttrpc: server is shut down");
    }
    this.#listeners.add(listener);
    try {
      await acceptEach(listener, {
        label: "ttrpc",
        stopped: () => this.#closing || !this.#listeners.has(listener),
        onConn: (conn) => this.#accept(conn as Deno.UnixConn),
      });
    } finally {
      this.#listeners.delete(listener);
      try {
        listener.close();
      } catch { /* already closed */ }
    }
  }

  // Vets and starts serving one accepted connection. The check is called
  // before the next accept (peercred.ts relies on that to identify the socket).
  #accept(conn: Deno.UnixConn): void {
    const authorize = this.#opts.authorize;
    if (authorize === undefined) {
      this.#start(conn);
      return;
    }
    let verdict: unknown;
    try {
      verdict = authorize(conn);
    } catch (err) {
      this.#refuse(conn, err);
      return;
    }
    if (!isThenable(verdict)) {
      this.#start(conn);
      return;
    }
    Promise.resolve(verdict).then(
      () => this.#closing ? conn.close() : this.#start(conn),
      (err) => this.#closing ? conn.close() : this.#refuse(conn, err),
    );
  }

  // A peer refused with PermissionDenied gets that as the answer to every
  // call (it learns why, and nothing runs); any other refusal just closes.
  #refuse(conn: Deno.UnixConn, err: unknown): void {
    if (!(err instanceof BerthError) || err.code !== Code.PermissionDenied) {
      refuse(conn, err);
      return;
    }
    log.warn("ttrpc: refusing connection", { error: err.message });
    this.#start(conn, new RefusedServices(err));
  }

  #start(conn: Deno.UnixConn, services: ServiceSet = this.#services): void {
    const sc = new ServerConnection(conn, services, this.#opts, (c) => this.#forget(c));
    this.#conns.add(sc);
    sc.run();
  }

  #forget(c: ServerConnection): void {
    this.#conns.delete(c);
    if (this.#conns.size === 0 && this.#allClosed.length > 0) {
      const waiters = this.#allClosed;
      this.#allClosed = [];
      for (const w of waiters) w();
    }
  }

  #closeListeners(): void {
    for (const l of this.#listeners) {
      try {
        l.close();
      } catch { /* already closed */ }
    }
    this.#listeners.clear();
  }

  /** Stops accepting connections; those open go on being served. */
  stopAccepting(): void {
    this.#closing = true;
    this.#closeListeners();
  }

  /**
   * Stops accepting, lets in-flight calls finish and their answers go out,
   * closing each connection once it is idle; after `timeoutMs` closes what
   * is left. Resolves when everything is closed.
   */
  async shutdown(opts: ShutdownOptions = {}): Promise<void> {
    this.stopAccepting();
    if (this.#conns.size > 0) {
      const allClosed = new Promise<void>((r) => this.#allClosed.push(r));
      for (const c of this.#conns) c.closeWhenIdle();
      let timer: ReturnType<typeof setTimeout> | undefined;
      const expired = new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), opts.timeoutMs ?? 10_000);
      });
      const late = await Promise.race([allClosed.then(() => false), expired]);
      clearTimeout(timer);
      if (late) {
        log.warn("ttrpc: shutdown timed out; closing busy connections", {
          connections: this.#conns.size,
        });
        this.#closeConnections();
      }
    }
    await Promise.all(this.#serving);
  }

  /** Closes the listeners and every connection now; in-flight calls are abandoned. */
  async close(): Promise<void> {
    this.stopAccepting();
    this.#closeConnections();
    await Promise.all(this.#serving);
  }

  #closeConnections(): void {
    for (const c of [...this.#conns]) c.close();
  }
}

function refuse(conn: Deno.UnixConn, err: unknown): void {
  log.warn("ttrpc: refusing connection", {
    error: err instanceof Error ? err.message : String(err),
  });
  try {
    conn.close();
  } catch { /* already closed */ }
}

/** The services of a refused connection: every lookup fails with the refusal. */
class RefusedServices extends ServiceSet {
  constructor(readonly refusal: BerthError) {
    super();
  }

  override lookup(): MethodEntry {
    throw this.refusal;
  }
}
