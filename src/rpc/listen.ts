/**
 * Unix-socket plumbing both transports share: a private (0600) listener
 * that replaces a stale socket file and refuses a live one, and the accept
 * loop that survives a failing accept. Every listener the daemon and the
 * shim open goes through {@link listenPrivate}.
 *
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";

/** A listener on a private unix socket, and how to remove its file afterwards. */
export interface PrivateSocket {
  listener: Deno.UnixListener;
  /** Removes the socket file, unless someone has replaced it meanwhile. */
  removeFile(): Promise<void>;
}

/**
 * Listens on the unix socket `path`, made 0600 (under the usual umask it is
 * never writable by others, even before the chmod). A stale socket file is
 * replaced; a live one is AlreadyExists. Every listener the daemon and the
 * shim open goes through here.
 */
export async function listenPrivate(path: string): Promise<PrivateSocket> {
  await removeStaleSocket(path);
  const listener = Deno.listen({ transport: "unix", path });
  let ino: number | null;
  try {
    await Deno.chmod(path, 0o600);
    ino = (await Deno.lstat(path)).ino;
  } catch (err) {
    listener.close();
    throw err;
  }
  return {
    listener,
    async removeFile() {
      try {
        if ((await Deno.lstat(path)).ino === ino) await Deno.remove(path);
      } catch { /* already gone */ }
    },
  };
}

/**
 * Removes `path` if it is a socket nobody listens on; refuses live sockets
 * and other files (AlreadyExists).
 */
export async function removeStaleSocket(path: string): Promise<void> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isSocket) {
    throw new BerthError(Code.AlreadyExists, `${path} exists and is not a socket`);
  }
  try {
    const probe = await Deno.connect({ transport: "unix", path });
    probe.close();
  } catch {
    await Deno.remove(path);
    return;
  }
  throw new BerthError(Code.AlreadyExists, `${path} is in use by a running server`);
}

/** True for the errors a closed listener or connection gives. */
export function isClosedError(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted;
}

/**
 * Accepts connections from `listener` and hands each to `onConn` until the
 * listener is closed or `stopped()`; one accepted while stopping is closed.
 * A failing accept (out of descriptors and the like) is retried after a
 * growing pause, up to a second. Both the ttrpc and the gRPC server use it.
 */
export async function acceptEach(
  listener: Deno.Listener,
  opts: { label: string; stopped: () => boolean; onConn: (conn: Deno.Conn) => void },
): Promise<void> {
  let backoff = 0;
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (err) {
      if (opts.stopped() || isClosedError(err)) return;
      backoff = Math.min(backoff === 0 ? 5 : backoff * 2, 1000);
      log.warn(`${opts.label}: accept failed`, { error: String(err), retry_ms: backoff });
      await new Promise((r) => setTimeout(r, backoff));
      continue;
    }
    backoff = 0;
    if (opts.stopped()) {
      conn.close();
      continue;
    }
    opts.onConn(conn);
  }
}
