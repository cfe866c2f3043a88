/**
 * Optional peer-credential check for a ttrpc server: refuse connections
 * whose peer runs as another user (SO_PEERCRED), like Go ttrpc's
 * UnixSocketRequireSameUser. Plug it in as {@link ServerOptions.authorize}.
 *
 * Deno gives no file descriptor for an accepted `Deno.UnixConn`, and
 * SO_PEERCRED needs one. This module finds it soundly from /proc: the
 * kernel lists every socket accepted on a listening path with that path
 * in /proc/net/unix, and /proc/self/fd maps socket inodes to our
 * descriptors. Accepted-on-our-path ∩ held-by-us − already-vetted is
 * exactly the connection just accepted, because the server runs this
 * check synchronously right after each accept, before accepting the next.
 * Anything ambiguous is refused (fail closed). The getsockopt call itself
 * is FFI and lives in ffi/; it is passed in.
 *
 * @example
 * ```ts
 * const server = new Server({ authorize: sameUserOnly() });
 * ```
 * @module
 */

import { getPeerCred } from "../../ffi/mod.ts";
import { BerthError, Code } from "../errdefs/mod.ts";

/** The credentials SO_PEERCRED reports: those of the peer when it connected. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** Reads SO_PEERCRED of socket descriptor `fd` (from ffi/). */
export type PeerCredReader = (fd: number) => PeerCred;

/** Options of {@link requireSameUser}. */
export interface SameUserOptions {
  /** The uid peers must have (default: this process's uid). */
  uid?: number;
  /** Several uids peers may have (instead of `uid`). */
  uids?: readonly number[];
  /** Where to read the kernel's socket tables (tests point these elsewhere). */
  procNetUnix?: string;
  /** Directory of this process's descriptors. */
  procSelfFd?: string;
}

/**
 * A connection check refusing peers whose uid differs from ours. It must
 * run synchronously right after each accept (Server does so); it throws
 * PermissionDenied for a foreign peer and Unavailable when the connection
 * cannot be identified.
 */
export function requireSameUser(
  readPeerCred: PeerCredReader,
  opts: SameUserOptions = {},
): (conn: Deno.UnixConn) => PeerCred {
  const want = new Set(opts.uids ?? [opts.uid ?? Deno.uid()]);
  const netUnix = opts.procNetUnix ?? "/proc/net/unix";
  const selfFd = opts.procSelfFd ?? "/proc/self/fd";
  // Per listening path: inodes of connections already vetted.
  const vetted = new Map<string, Set<number>>();

  return (conn: Deno.UnixConn): PeerCred => {
    const path = conn.localAddr.path;
    if (!path) {
      throw new BerthError(Code.Unavailable, "ttrpc: peer check needs a named listening socket");
    }
    const onPath = acceptedOn(Deno.readTextFileSync(netUnix), path);
    const ours = socketFds(selfFd);
    const known = vetted.get(path) ?? new Set<number>();
    // Forget connections that are gone, so the set only holds live ones.
    for (const ino of known) if (!ours.has(ino) || !onPath.has(ino)) known.delete(ino);
    const fresh = [...onPath].filter((ino) => ours.has(ino) && !known.has(ino));
    if (fresh.length !== 1) {
      throw new BerthError(
        Code.Unavailable,
        `ttrpc: cannot tell which socket was just accepted on ${path} (${fresh.length} candidates); refusing`,
      );
    }
    const cred = readPeerCred(ours.get(fresh[0])!);
    // Vetted either way: a refused connection may stay open (answered
    // PermissionDenied), and must not count as fresh at the next accept.
    known.add(fresh[0]);
    vetted.set(path, known);
    if (!want.has(cred.uid)) {
      throw new BerthError(
        Code.PermissionDenied,
        `peer pid ${cred.pid} runs as uid ${cred.uid}, only uid ${
          [...want].join(", ")
        } may connect`,
      );
    }
    return cred;
  };
}

/**
 * The usual check: SO_PEERCRED through ffi/, peers must share our uid (or
 * have one of `uids`, when given: the daemon also admits its sockets' owners).
 */
export function sameUserOnly(uids?: readonly number[]): (conn: Deno.UnixConn) => PeerCred {
  return requireSameUser(getPeerCred, { uids });
}

/**
 * Inodes of connected (accepted) stream sockets bound to `path`, from the
 * text of /proc/net/unix. Listening sockets carry the __SO_ACCEPTCON flag
 * (0x10000) and are skipped, as are sockets still in the backlog (inode 0).
 */
export function acceptedOn(table: string, path: string): Set<number> {
  const out = new Set<number>();
  for (const line of table.split("\n")) {
    // Num RefCount Protocol Flags Type St Inode Path
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || f.slice(7).join(" ") !== path) continue;
    const flags = parseInt(f[3], 16);
    const state = f[5];
    const inode = Number(f[6]);
    if ((flags & 0x10000) !== 0 || state !== "03" || !(inode > 0)) continue;
    out.add(inode);
  }
  return out;
}

/** Socket inode -> descriptor for every socket this process holds. */
function socketFds(dir: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const e of Deno.readDirSync(dir)) {
    let target: string;
    try {
      target = Deno.readLinkSync(`${dir}/${e.name}`);
    } catch {
      continue; // closed meanwhile
    }
    const m = /^socket:\[(\d+)\]$/.exec(target);
    if (m) out.set(Number(m[1]), Number(e.name));
  }
  return out;
}
