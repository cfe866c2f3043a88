/**
 * Raw file descriptors: close, pipes, and reads and writes that never block
 * the event loop, for fds that Deno cannot wrap (a pty master received over
 * a socket, a pipe end made here).
 *
 * What Deno 2.9 offers instead, and why ffi does its own IO (tried here,
 * Deno 2.9.6 on Linux):
 * - `node:fs` read/readSync/createReadStream with a raw fd: EBADF. node:fs
 *   keeps its own fd table and only knows fds that node:fs opened.
 * - `new net.Socket({ fd })` (node:net): works, on the very same OS fd, which
 *   it owns and closes on destroy; but only for sockets. A pty master gives
 *   "Unsupported fd type: TTY".
 * - `new tty.ReadStream(fd)` for a tty fd > 2: works on the same OS fd (no
 *   dup), switches it to O_NONBLOCK, reads through Deno's reactor and
 *   closes the fd on destroy. It is an undocumented compatibility path
 *   (made for node-pty), refuses non-tty fds, and hides errno (EIO at the
 *   end of a pty) behind stream events: too thin a contract for the shim's
 *   console.
 * So ffi reads and writes itself: the syscall runs synchronously on the JS
 * thread (errno exact) once the poller says the fd is ready. Sockets that
 * should become ordinary Node streams can still go to net.Socket({ fd }).
 * @module
 */

import { EAGAIN, EINTR, SyscallError } from "./errno.ts";
import { check, errno, libc } from "./libc.ts";
import { forgetFd, READABLE, waitFd, type WaitOptions, WRITABLE } from "./poller.ts";

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/**
 * Closes `fd`. Pending ffi waits on it (readFd, accept, waitPidfd ...)
 * reject with EBADF first, so none hangs on a vanished fd.
 *
 * @example
 * ```ts
 * const [r, w] = pipe();
 * close(r);
 * close(w);
 * ```
 */
export function close(fd: number): void {
  forgetFd(fd);
  if (libc().close(fd) === -1) {
    const e = errno();
    // Linux releases the fd even when close reports EINTR: never retry.
    if (e !== EINTR) throw new SyscallError("close", e, String(fd));
  }
}

/** A pipe as `[readEnd, writeEnd]`, both O_NONBLOCK and close-on-exec. */
export function pipe(): [number, number] {
  const fds = new Int32Array(2);
  check(libc().pipe2(fds, O_CLOEXEC | O_NONBLOCK), "pipe2");
  return [fds[0], fds[1]];
}

/** True when `fd`'s open file has O_NONBLOCK set. */
export function isNonblocking(fd: number): boolean {
  return (check(libc().fcntl(fd, F_GETFL, 0), "fcntl", `${fd}, F_GETFL`) & O_NONBLOCK) !== 0;
}

/**
 * Sets or clears O_NONBLOCK on `fd`. The flag belongs to the open file, so
 * every process holding a copy of it sees the change: only use it on files
 * berth owns (a received pty master, a pipe it made).
 */
export function setNonblocking(fd: number, on = true): void {
  const lib = libc();
  const flags = check(lib.fcntl(fd, F_GETFL, 0), "fcntl", `${fd}, F_GETFL`);
  const next = on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK;
  if (next !== flags) check(lib.fcntl(fd, F_SETFL, next), "fcntl", `${fd}, F_SETFL`);
}

/**
 * Reads up to `buf.length` bytes from `fd` into `buf` and resolves with the
 * count; 0 means end of file. Waits (off the event loop) until the fd is
 * readable. A pty master fails with EIO once every slave is closed: that
 * is its end of file.
 *
 * @example
 * ```ts
 * const buf = new Uint8Array(4096);
 * const n = await readFd(master, buf);
 * ```
 */
export async function readFd(
  fd: number,
  buf: Uint8Array,
  opts: WaitOptions = {},
): Promise<number> {
  if (buf.length === 0) return 0;
  const lib = libc();
  // A blocking fd is read only once it is known to be readable.
  if (!isNonblocking(fd)) await waitFd(fd, READABLE, "read", opts);
  for (;;) {
    const n = Number(lib.read(fd, buf, BigInt(buf.length)));
    if (n >= 0) return n;
    const e = errno();
    if (e === EAGAIN) await waitFd(fd, READABLE, "read", opts);
    else if (e !== EINTR) throw new SyscallError("read", e, `fd ${fd}`);
  }
}

/**
 * Writes all of `data` to `fd`, waiting (off the event loop) whenever the fd
 * is full. On a blocking fd a large write can still stall the thread until
 * the reader catches up: give it O_NONBLOCK ({@link setNonblocking}) first.
 * A reader that went away gives EPIPE (Deno ignores SIGPIPE).
 *
 * @example
 * ```ts
 * await writeFd(master, new TextEncoder().encode("ls\n"));
 * ```
 */
export async function writeFd(
  fd: number,
  data: Uint8Array,
  opts: WaitOptions = {},
): Promise<void> {
  const lib = libc();
  if (!isNonblocking(fd)) await waitFd(fd, WRITABLE, "write", opts);
  let done = 0;
  while (done < data.length) {
    const rest = data.subarray(done);
    const n = Number(lib.write(fd, rest, BigInt(rest.length)));
    if (n >= 0) {
      done += n;
      continue;
    }
    const e = errno();
    if (e === EAGAIN) await waitFd(fd, WRITABLE, "write", opts);
    else if (e !== EINTR) throw new SyscallError("write", e, `fd ${fd}`);
  }
}
