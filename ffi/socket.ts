/**
 * Unix sockets made through libc, for what Deno's own sockets cannot do:
 * pass file descriptors (SCM_RIGHTS: runc's console socket hands over a pty
 * master this way) and read the peer's credentials (SO_PEERCRED).
 *
 * Every fd made here is close-on-exec and O_NONBLOCK; calls that may wait
 * (accept, connect on a full backlog, send, receive) do so off the event
 * loop and run the syscall itself on the JS thread (see poller.ts).
 *
 * A connection accepted here can still become an ordinary stream: after
 * getPeerCred, `new net.Socket({ fd })` (node:net) wraps that same fd with
 * Deno's native IO and closes it on destroy (seen in Deno 2.9.6). Deno's
 * own `Deno.UnixConn` exposes no fd at all.
 *
 * @example
 * ```ts
 * import { accept, listenUnix, recvFds } from "./socket.ts";
 * const l = listenUnix("/run/berth/console.sock");
 * const conn = await accept(l);
 * const { fds: [master] } = await recvFds(conn, new Uint8Array(4096));
 * ```
 * @module
 */

import { EAGAIN, ECONNABORTED, EINTR, EMSGSIZE, ENAMETOOLONG, SyscallError } from "./errno.ts";
import { addressOf, check, errno, invalid, libc, pinned } from "./libc.ts";
import { close, isNonblocking } from "./fd.ts";
import { READABLE, waitFd, type WaitOptions, WRITABLE } from "./poller.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SUN_PATH_MAX = 108;
const SCM_MAX_FD = 253; // the kernel's limit per message

// LP64 layouts. struct msghdr: name@0, namelen@8, iov@16, iovlen@24,
// control@32, controllen@40, flags@48 (56 bytes). struct iovec: base@0,
// len@8. struct cmsghdr: len@0 (size_t), level@8, type@12, data@16.
const MSGHDR_SIZE = 56;
const CMSG_HEADER = 16;
const align8 = (n: number) => (n + 7) & ~7;

/** The process at the other end of a unix socket, as it was at connect. */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** What {@link recvFds} received. */
export interface Received {
  /** Bytes written into the buffer; 0 with no fds means the peer closed. */
  bytes: number;
  /** Received fds, close-on-exec, now owned by the caller. */
  fds: number[];
}

/** A connected pair of unix stream sockets, O_NONBLOCK and close-on-exec. */
export function socketpair(): [number, number] {
  const fds = new Int32Array(2);
  check(
    libc().socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds),
    "socketpair",
  );
  return [fds[0], fds[1]];
}

/**
 * struct sockaddr_un for `path`; a leading "@" names an abstract socket.
 * Paths longer than sun_path holds fail with ENAMETOOLONG.
 */
function sockaddr(path: string, call: string): Uint8Array<ArrayBuffer> {
  const abstract = path.startsWith("@");
  const bytes = new TextEncoder().encode(abstract ? path.slice(1) : path);
  if (bytes.includes(0)) throw invalid(call, `${JSON.stringify(path)} contains NUL`);
  if (bytes.length === 0) throw invalid(call, "empty socket path");
  const used = bytes.length + 1; // the abstract name's leading NUL, or the path's trailing one
  if (used > SUN_PATH_MAX) throw new SyscallError(call, ENAMETOOLONG, path);
  const addr = new Uint8Array(2 + used);
  addr[0] = AF_UNIX; // sa_family_t, little-endian u16
  addr.set(bytes, abstract ? 3 : 2);
  return addr;
}

function newSocket(): number {
  return check(libc().socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), "socket");
}

/**
 * A unix stream socket bound to `path` and listening. The path must not
 * exist yet (EADDRINUSE otherwise); the caller removes it when done.
 */
export function listenUnix(path: string, opts: { backlog?: number } = {}): number {
  const addr = sockaddr(path, "bind");
  const fd = newSocket();
  try {
    check(libc().bind(fd, addr, addr.length), "bind", path);
    check(libc().listen(fd, opts.backlog ?? 128), "listen", path);
  } catch (err) {
    close(fd);
    throw err;
  }
  return fd;
}

/**
 * Connects to the unix socket at `path`. A listener with a full backlog
 * answers EAGAIN; the call then retries a few milliseconds later.
 */
export async function connectUnix(path: string, opts: WaitOptions = {}): Promise<number> {
  const addr = sockaddr(path, "connect");
  const fd = newSocket();
  try {
    for (let delay = 1;; delay = Math.min(delay * 2, 100)) {
      if (libc().connect(fd, addr, addr.length) === 0) return fd;
      const e = errno();
      if (e === EINTR) continue;
      if (e !== EAGAIN) throw new SyscallError("connect", e, path);
      opts.signal?.throwIfAborted();
      await new Promise((r) => setTimeout(r, delay));
    }
  } catch (err) {
    close(fd);
    throw err;
  }
}

/**
 * Accepts one connection on listening socket `fd`, waiting off the event
 * loop. The new socket is O_NONBLOCK and close-on-exec. Abort `signal` (or
 * close `fd`) to stop waiting.
 */
export async function accept(fd: number, opts: WaitOptions = {}): Promise<number> {
  const lib = libc();
  if (!isNonblocking(fd)) await waitFd(fd, READABLE, "accept", opts);
  for (;;) {
    const conn = lib.accept4(fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn >= 0) return conn;
    const e = errno();
    if (e === EAGAIN) await waitFd(fd, READABLE, "accept", opts);
    else if (e !== EINTR && e !== ECONNABORTED) throw new SyscallError("accept4", e, `fd ${fd}`);
  }
}

// The memory a msghdr points to must stay put and alive during the call, so
// send and receive share one set of module-level buffers (allocated on first
// use, the data buffer grown on demand); calls are synchronous and never
// overlap on the JS thread.
interface Scratch {
  /** msghdr at 0, its one iovec at MSGHDR_SIZE. */
  hdr: Uint8Array<ArrayBuffer>;
  hv: DataView;
  control: Uint8Array<ArrayBuffer>;
  cv: DataView;
  data: Uint8Array<ArrayBuffer>;
}
let scratch: Scratch | undefined;

/** The shared buffers, set up to carry `size` data bytes and `nfds` fds. */
function prepare(size: number, nfds: number): Scratch {
  if (!scratch) {
    const hdr = pinned(MSGHDR_SIZE + 16);
    const control = pinned(CMSG_HEADER + align8(4 * SCM_MAX_FD));
    scratch = {
      hdr,
      hv: new DataView(hdr.buffer),
      control,
      cv: new DataView(control.buffer),
      data: pinned(4096),
    };
  }
  const s = scratch;
  if (s.data.length < size) s.data = pinned(2 ** Math.ceil(Math.log2(size)));
  s.hdr.fill(0);
  s.hv.setBigUint64(16, addressOf(s.hdr) + BigInt(MSGHDR_SIZE), true); // msg_iov
  s.hv.setBigUint64(24, 1n, true); // msg_iovlen
  s.hv.setBigUint64(MSGHDR_SIZE, addressOf(s.data), true); // iov_base
  s.hv.setBigUint64(MSGHDR_SIZE + 8, BigInt(size), true); // iov_len
  if (nfds > 0) {
    s.hv.setBigUint64(32, addressOf(s.control), true); // msg_control
    s.hv.setBigUint64(40, BigInt(CMSG_HEADER + align8(4 * nfds)), true); // msg_controllen
  }
  return s;
}

/**
 * Sends `data` with `fds` attached (SCM_RIGHTS) over unix socket `fd`;
 * the fds stay open here too. A stream socket carries fds only with at
 * least one data byte. Waits off the event loop while the socket is full.
 */
export async function sendFds(
  fd: number,
  data: Uint8Array,
  fds: readonly number[],
  opts: WaitOptions = {},
): Promise<void> {
  if (fds.length > 0 && data.length === 0) {
    throw invalid("sendmsg", "fds need at least one data byte");
  }
  if (fds.length > SCM_MAX_FD) throw invalid("sendmsg", `at most ${SCM_MAX_FD} fds per message`);
  const lib = libc();
  let sent = 0;
  while (sent < data.length) {
    // After a partial send the fds are already across: send the rest bare.
    const nfds = sent === 0 ? fds.length : 0;
    const s = prepare(data.length - sent, nfds);
    s.data.set(data.subarray(sent));
    if (nfds > 0) {
      s.cv.setBigUint64(0, BigInt(CMSG_HEADER + 4 * nfds), true);
      s.cv.setInt32(8, SOL_SOCKET, true);
      s.cv.setInt32(12, SCM_RIGHTS, true);
      fds.forEach((f, i) => s.cv.setInt32(CMSG_HEADER + 4 * i, f, true));
    }
    const n = Number(lib.sendmsg(fd, s.hdr, MSG_DONTWAIT | MSG_NOSIGNAL));
    if (n >= 0) {
      sent += n;
      continue;
    }
    const e = errno();
    if (e === EAGAIN) await waitFd(fd, WRITABLE, "sendmsg", opts);
    else if (e !== EINTR) throw new SyscallError("sendmsg", e, `fd ${fd}`);
  }
}

/**
 * Receives into `buf` from unix socket `fd`, with any fds sent along
 * (close-on-exec, owned by the caller). Waits off the event loop until
 * something arrives. More than `maxFds` (default 16) fds in one message is
 * an EMSGSIZE error; the fds that did arrive are closed.
 */
export async function recvFds(
  fd: number,
  buf: Uint8Array,
  opts: WaitOptions & { maxFds?: number } = {},
): Promise<Received> {
  const lib = libc();
  const maxFds = opts.maxFds ?? 16;
  if (!Number.isInteger(maxFds) || maxFds < 1 || maxFds > SCM_MAX_FD) {
    throw invalid("recvmsg", `maxFds must be in 1..${SCM_MAX_FD}`);
  }
  for (;;) {
    const s = prepare(buf.length, maxFds);
    const n = Number(lib.recvmsg(fd, s.hdr, MSG_DONTWAIT | MSG_CMSG_CLOEXEC));
    if (n < 0) {
      const e = errno();
      if (e === EAGAIN) await waitFd(fd, READABLE, "recvmsg", opts);
      else if (e !== EINTR) throw new SyscallError("recvmsg", e, `fd ${fd}`);
      continue;
    }
    buf.set(s.data.subarray(0, n));
    const fds = parseRights(s.cv, Number(s.hv.getBigUint64(40, true)));
    if (s.hv.getInt32(48, true) & MSG_CTRUNC) {
      for (const f of fds) close(f);
      throw new SyscallError("recvmsg", EMSGSIZE, `fd ${fd}: more than ${maxFds} fds`);
    }
    return { bytes: n, fds };
  }
}

/** The fds of every SCM_RIGHTS message in the first `length` control bytes. */
function parseRights(cv: DataView, length: number): number[] {
  const fds: number[] = [];
  for (let off = 0; off + CMSG_HEADER <= length;) {
    const len = Number(cv.getBigUint64(off, true));
    if (len < CMSG_HEADER) break;
    if (cv.getInt32(off + 8, true) === SOL_SOCKET && cv.getInt32(off + 12, true) === SCM_RIGHTS) {
      for (let p = off + CMSG_HEADER; p + 4 <= off + len; p += 4) fds.push(cv.getInt32(p, true));
    }
    off += align8(len);
  }
  return fds;
}

/** The pid, uid and gid of the process at the other end of unix socket `fd`. */
export function getPeerCred(fd: number): PeerCred {
  const cred = new Int32Array(3);
  const len = new Uint32Array([12]);
  check(
    libc().getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len),
    "getsockopt",
    `${fd}, SO_PEERCRED`,
  );
  return { pid: cred[0], uid: cred[1] >>> 0, gid: cred[2] >>> 0 };
}
