/**
 * The client's one connection to berth daemon: ttrpc on `<address>.ttrpc`,
 * the namespace sent with every call, the global --timeout applied as a
 * deadline. Service descriptors are passed in by the commands, so this
 * module loads no generated code itself (start-up time).
 * @module
 */

import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { BerthError, Code } from "../errdefs/mod.ts";
// The client half of ttrpc only: ttrpc/mod.ts would also load the server and its peer check (ffi).
import { type Client, connect } from "../ttrpc/client.ts";
import { type ServiceClient, serviceClient } from "../ttrpc/stubs.ts";
import { TTRPC_NAMESPACE_KEY } from "../namespaces/mod.ts";
import { DEFAULT_ADDRESS, ttrpcSocket } from "../defaults/mod.ts";
import type { GlobalOptions } from "./cli.ts";
import { HintedError } from "./errors.ts";

/** A connection to the daemon, opened once and shared by a command's calls. */
export class Connection {
  readonly #global: GlobalOptions;
  readonly #client: Client;
  readonly #deadline: number;
  /** Aborted on Ctrl-C or by the command; ends every call in flight. */
  readonly abort = new AbortController();

  private constructor(global: GlobalOptions, client: Client) {
    this.#global = global;
    this.#client = client;
    this.#deadline = global.timeoutMs > 0 ? Date.now() + global.timeoutMs : 0;
  }

  /** Connects to the daemon named by the global options, with an actionable error if it is not there. */
  static async open(global: GlobalOptions): Promise<Connection> {
    const path = ttrpcSocket(global.address);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const span = global.trace?.child("connect");
    try {
      const connecting = connect(path);
      if (span !== undefined) connecting.then(() => span.finish(), (err) => span.finish(err));
      const limit = global.connectTimeoutMs || global.timeoutMs;
      const client = limit > 0
        ? await Promise.race([
          connecting,
          new Promise<never>((_, reject) => {
            timer = setTimeout(
              () =>
                reject(
                  new HintedError(
                    Code.DeadlineExceeded,
                    `timed out connecting to berth daemon at ${path}`,
                    "is the daemon busy or stuck? check its log",
                  ),
                ),
              limit,
            );
          }),
        ])
        : await connecting;
      return new Connection(global, client);
    } catch (err) {
      if (err instanceof HintedError) throw err;
      const cause = (err as Error)?.cause;
      const denied = cause instanceof Deno.errors.PermissionDenied;
      if (denied) {
        throw new HintedError(
          Code.PermissionDenied,
          `permission denied connecting to berth daemon at ${path}`,
          "run the client as the user the daemon runs as (usually root)",
          { cause: err },
        );
      }
      // One line, as people paste it into searches and bug reports.
      const start = `berth daemon${
        global.address === DEFAULT_ADDRESS ? "" : ` --address ${global.address}`
      }`;
      throw new BerthError(
        Code.Unavailable,
        `cannot connect to berth daemon at ${path}: is it running? start it with: ${start}`,
        { cause: err },
      );
    } finally {
      // Guarded: the first touch of clearTimeout loads Deno's timers (~10 ms of every start).
      if (timer !== undefined) clearTimeout(timer);
    }
  }

  /** The namespace calls are made in. */
  get namespace(): string {
    return this.#global.namespace;
  }

  /** A typed stub of `service`, sending the namespace and the remaining --timeout with each call. */
  service<S extends GenService<GenServiceMethods>>(
    service: S,
    opts: { lease?: string } = {},
  ): ServiceClient<S> {
    const remaining = this.#deadline > 0 ? Math.max(1, this.#deadline - Date.now()) : undefined;
    const metadata: Record<string, string> = { [TTRPC_NAMESPACE_KEY]: this.#global.namespace };
    // containerd's key for "hold what this call creates under that lease".
    if (opts.lease) metadata["containerd-lease"] = opts.lease;
    return serviceClient(this.#client, service, {
      defaults: {
        metadata,
        timeoutMs: remaining,
        signal: this.abort.signal,
        trace: this.#global.trace,
      },
    });
  }

  /** Closes the connection (calls in flight fail). */
  close(): void {
    this.#client.close();
  }
}

/** Runs `fn` with an open connection, always closing it. */
export async function withConnection<T>(
  global: GlobalOptions,
  fn: (c: Connection) => Promise<T>,
): Promise<T> {
  const conn = await Connection.open(global);
  try {
    return await fn(conn);
  } finally {
    conn.close();
  }
}
