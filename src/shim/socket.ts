/**
 * Where a shim listens: one unix socket per (containerd address, namespace,
 * group), named by a hash so the path stays short, plus the lock that keeps
 * two `start` calls for the same group from starting two shims.
 * Tiny imports only: `start` is on the hot path.
 * @module
 */

/** The default directory of shim sockets (containerd's Go shims use /run/containerd/s). */
export const DEFAULT_SOCKET_DIR = "/run/berth/s";

/** The socket directory: env BERTH_SHIM_SOCKET_DIR (tests) or {@link DEFAULT_SOCKET_DIR}. */
export function socketDir(env: (name: string) => string | undefined = Deno.env.get): string {
  return env("BERTH_SHIM_SOCKET_DIR") || DEFAULT_SOCKET_DIR;
}

/** Joins path parts like Go's filepath.Join for plain names: empties dropped, slashes collapsed. */
function joinPath(...parts: string[]): string {
  return parts.filter((p) => p !== "").join("/").replace(/\/+/g, "/").replace(/(.)\/$/, "$1");
}

/**
 * The socket path for a group: `<dir>/<sha256 hex of address/namespace/group>`,
 * as containerd's shims derive theirs, so one group maps to one socket.
 */
export async function socketPath(
  dir: string,
  address: string,
  namespace: string,
  group: string,
): Promise<string> {
  const digest = await crypto.subtle.digest(
    "SHA-256",
    new TextEncoder().encode(joinPath(address, namespace, group)),
  );
  const hex = Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  return `${dir}/${hex}`;
}

/** True when something accepts connections on the unix socket at `path`. */
export async function canConnect(path: string): Promise<boolean> {
  try {
    const conn = await Deno.connect({ transport: "unix", path });
    conn.close();
    return true;
  } catch {
    return false;
  }
}

/**
 * Takes the group's lock file (`<socket>.lock`, flock), retrying when the
 * file was replaced while waiting (a shim that exits unlinks it while holding
 * it, so a waiter may end up holding the lock of a dead inode).
 * Returns the release function, which also removes the lock file when no
 * socket is there to own it, unless `keep` (the spare's lock, which stays
 * with its directory: it is taken by every start, spare and retirement
 * at once, and a lock file that is never replaced cannot be raced).
 */
export async function lockGroup(socket: string, { keep = false } = {}): Promise<() => void> {
  const path = `${socket}.lock`;
  for (;;) {
    const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
    try {
      await file.lock(true);
      const held = await file.stat();
      const now = await Deno.stat(path).catch(() => null);
      if (now && now.ino === held.ino && now.dev === held.dev) {
        return () => {
          // A lock file never outlives its socket: released with no socket
          // beside it (a start that lost a race, a failed start, a retiring
          // spare that was adopted meanwhile), it goes; waiters on it retry.
          try {
            Deno.lstatSync(socket);
          } catch {
            try {
              if (!keep) Deno.removeSync(path);
            } catch {
              // gone already
            }
          }
          try {
            file.close();
          } catch {
            // already closed
          }
        };
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) {
        file.close();
        throw err;
      }
    }
    file.close();
  }
}

/** Removes a socket file, if there; call while holding its lock. */
export function removeSocketFile(socket: string): void {
  try {
    Deno.removeSync(socket);
  } catch {
    // already gone
  }
}

/** Removes the group's socket and lock files; call while holding the lock. */
export function removeGroupFiles(socket: string): void {
  for (const path of [socket, `${socket}.lock`]) {
    try {
      Deno.removeSync(path);
    } catch {
      // already gone
    }
  }
}
