/**
 * INTERIM: the few libc calls the shim needs, written while ffi/mod.ts (the
 * ffi helper's work) had not landed. Every signature here belongs in
 * ffi/mod.ts; once it provides them, src/shim/sys.ts switches over and this
 * file goes. x86_64/aarch64 Linux, glibc.
 * @module
 */

const lib = Deno.dlopen("libc.so.6", {
  __errno_location: { parameters: [], result: "pointer" },
  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64"], result: "i64" },
  waitid_blocking: { name: "waitid", parameters: ["i32", "i32", "buffer", "i32"], result: "i32", nonblocking: true },
  waitid: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32" },
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "i64" },
  close: { parameters: ["i32"], result: "i32" },
  read_blocking: { name: "read", parameters: ["i32", "buffer", "u64"], result: "i64", nonblocking: true },
  write_blocking: { name: "write", parameters: ["i32", "buffer", "u64"], result: "i64", nonblocking: true },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  strerror: { parameters: ["i32"], result: "pointer" },
});
const s = lib.symbols;

const ERRNO_NAMES: Record<number, string> = {
  1: "EPERM", 2: "ENOENT", 3: "ESRCH", 4: "EINTR", 5: "EIO", 9: "EBADF", 10: "ECHILD", 11: "EAGAIN",
  12: "ENOMEM", 13: "EACCES", 16: "EBUSY", 17: "EEXIST", 20: "ENOTDIR", 22: "EINVAL", 28: "ENOSPC",
  38: "ENOSYS", 98: "EADDRINUSE", 111: "ECONNREFUSED",
};

/** An error from a libc call, with errno's name (e.g. "EINVAL") as `code`. */
export class ErrnoError extends Error {
  constructor(readonly errno: number, call: string) {
    const p = s.strerror(errno);
    const text = p ? new Deno.UnsafePointerView(p).getCString() : `errno ${errno}`;
    super(`${call}: ${text} (${ERRNO_NAMES[errno] ?? errno})`);
    this.name = "ErrnoError";
    this.code = ERRNO_NAMES[errno] ?? `E${errno}`;
  }
  readonly code: string;
}

function errno(): number {
  const p = s.__errno_location();
  return p ? new Deno.UnsafePointerView(p).getInt32() : 0;
}

function check(r: number | bigint, call: string): number {
  const n = Number(r);
  if (n < 0) throw new ErrnoError(errno(), call);
  return n;
}

function cstr(text: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(text);
  const out = new Uint8Array(b.length + 1);
  out.set(b);
  return out;
}

const SYS_PIDFD_SEND_SIGNAL = 424n;
const SYS_PIDFD_OPEN = 434n;

/** prctl(PR_SET_CHILD_SUBREAPER, 1). */
export function setChildSubreaper(): void {
  check(s.prctl(36, 1n, 0n, 0n, 0n), "prctl(PR_SET_CHILD_SUBREAPER)");
}

/** pidfd_open(pid, 0). */
export function pidfdOpen(pid: number): number {
  return check(s.syscall(SYS_PIDFD_OPEN, BigInt(pid), 0n, 0n, 0n), `pidfd_open(${pid})`);
}

/** pidfd_send_signal(fd, sig, NULL, 0). */
export function pidfdSendSignal(fd: number, signal: number): void {
  check(s.syscall(SYS_PIDFD_SEND_SIGNAL, BigInt(fd), BigInt(signal), 0n, 0n), "pidfd_send_signal");
}

/** How a child ended: exit code, or the signal that killed it. */
export interface ChildExit {
  pid: number;
  code: number;
  signal: number;
}

function parseSiginfo(si: Uint8Array): ChildExit {
  const dv = new DataView(si.buffer, si.byteOffset, si.byteLength);
  const code = dv.getInt32(8, true); // CLD_EXITED 1, CLD_KILLED 2, CLD_DUMPED 3
  const status = dv.getInt32(24, true);
  return code === 1 ? { pid: dv.getInt32(16, true), code: status, signal: 0 } : { pid: dv.getInt32(16, true), code: 0, signal: status };
}

const P_PIDFD = 3;
const WEXITED = 4;
const WNOHANG = 1;

/** Waits (on a worker thread) until the process behind `pidfd` exits, and reaps it. */
export async function waitPidfd(pidfd: number): Promise<ChildExit> {
  const si = new Uint8Array(128);
  const r = await s.waitid_blocking(P_PIDFD, pidfd, si, WEXITED);
  if (r < 0) throw new Error("waitid(P_PIDFD) failed (the process was reaped elsewhere)");
  return parseSiginfo(si);
}

/** Reaps `pid` if it has exited (WNOHANG); null while it runs. */
export function waitPidNoHang(pid: number): ChildExit | null {
  const st = new Uint8Array(4);
  const r = check(s.waitpid(pid, st, WNOHANG), `waitpid(${pid})`);
  if (r === 0) return null;
  const v = new DataView(st.buffer).getInt32(0, true);
  return (v & 0x7f) === 0 ? { pid: r, code: (v >> 8) & 0xff, signal: 0 } : { pid: r, code: 0, signal: v & 0x7f };
}

/** mount(2). */
export function mount(source: string, target: string, fstype: string, flags: number, data: string): void {
  check(s.mount(cstr(source), cstr(target), cstr(fstype), BigInt(flags), cstr(data)), `mount ${target}`);
}

/** umount2(2). */
export function umount2(target: string, flags: number): void {
  check(s.umount2(cstr(target), flags), `umount2 ${target}`);
}

/** mkfifo(3). */
export function mkfifo(path: string, mode: number): void {
  check(s.mkfifo(cstr(path), mode), `mkfifo ${path}`);
}

/** close(2). */
export function closeFd(fd: number): void {
  s.close(fd);
}

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;

/** A nonblocking listening unix socket at `path` (made with libc: Deno's cannot receive fds). */
export function unixListen(path: string): number {
  const fd = check(s.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0), "socket");
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, AF_UNIX, true);
  const p = new TextEncoder().encode(path);
  if (p.length > 107) {
    s.close(fd);
    throw new Error(`socket path too long: ${path}`);
  }
  addr.set(p, 2);
  try {
    check(s.bind(fd, addr, 2 + p.length + 1), `bind ${path}`);
    check(s.listen(fd, 4), "listen");
  } catch (err) {
    s.close(fd);
    throw err;
  }
  return fd;
}

/** accept4 without blocking: a connected fd, or null when nobody is waiting. */
export function acceptNonblocking(fd: number): number | null {
  const r = Number(s.accept4(fd, null, null, SOCK_CLOEXEC));
  if (r >= 0) return r;
  const e = errno();
  if (e === 11) return null;
  throw new ErrnoError(e, "accept4");
}

/** Receives one message with SCM_RIGHTS; returns the fds passed (blocking socket expected). */
export function recvFds(fd: number): number[] {
  const data = new Uint8Array(4096);
  const control = new Uint8Array(64);
  const iov = new BigUint64Array(2);
  iov[0] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(data)));
  iov[1] = BigInt(data.length);
  const msg = new BigUint64Array(7); // struct msghdr on 64-bit
  msg[2] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(iov)));
  msg[3] = 1n;
  msg[4] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(control)));
  msg[5] = BigInt(control.length);
  check(s.recvmsg(fd, new Uint8Array(msg.buffer), 0), "recvmsg");
  const controllen = Number(new BigUint64Array(msg.buffer)[5]);
  const dv = new DataView(control.buffer);
  const fds: number[] = [];
  let off = 0;
  while (off + 16 <= controllen) {
    const len = Number(dv.getBigUint64(off, true));
    const level = dv.getInt32(off + 8, true);
    const type = dv.getInt32(off + 12, true);
    if (level === 1 && type === 1) for (let i = off + 16; i + 4 <= off + len; i += 4) fds.push(dv.getInt32(i, true));
    if (len < 16) break;
    off += (len + 7) & ~7;
  }
  return fds;
}

/** read(2) on a worker thread; 0 at EOF; -1 on error (EIO from a pty whose other side closed). */
export async function readFd(fd: number, buf: Uint8Array<ArrayBuffer>): Promise<number> {
  return Number(await s.read_blocking(fd, buf, BigInt(buf.length)));
}

/** Writes all of `data` to `fd` on a worker thread. */
export async function writeFdAll(fd: number, data: Uint8Array<ArrayBuffer>): Promise<void> {
  let off = 0;
  while (off < data.length) {
    const n = Number(await s.write_blocking(fd, data.subarray(off), BigInt(data.length - off)));
    if (n <= 0) throw new Error(`write to fd ${fd} failed`);
    off += n;
  }
}

/** TIOCSWINSZ: sets a terminal's size. */
export function setWinsize(fd: number, rows: number, cols: number): void {
  const ws = new Uint16Array([rows, cols, 0, 0]);
  check(s.ioctl(fd, 0x5414n, new Uint8Array(ws.buffer)), "ioctl(TIOCSWINSZ)");
}

/** Nonblocking waitid on a pidfd: the exit if the process has ended (and reaps it), else null. */
export function waitPidfdNoHang(pidfd: number): ChildExit | null {
  const si = new Uint8Array(128);
  check(s.waitid(P_PIDFD, pidfd, si, WEXITED | WNOHANG), "waitid");
  const pid = new DataView(si.buffer).getInt32(16, true);
  return pid === 0 ? null : parseSiginfo(si);
}
