/**
 * The only `Deno.dlopen` in berth: libc's symbols, bound on first use so
 * that importing ffi costs nothing (the client never touches most of it),
 * plus the helpers every wrapper shares: errno, C strings, failures.
 *
 * Internal to ffi/: other folders use the typed wrappers from ffi/mod.ts.
 * @module
 */

import { EINVAL, SyscallError } from "./errno.ts";

// Signatures follow the C prototypes on LP64 Linux (x86_64, arm64): int is
// i32, long/size_t are 64-bit. Variadic functions (prctl, ioctl, fcntl,
// open, syscall) are called with the fixed argument list that the call
// needs, which the LP64 calling conventions pass like a prototyped call.
const SYMBOLS = {
  __errno_location: { parameters: [], result: "pointer" },

  close: { parameters: ["i32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  fcntl: { parameters: ["i32", "i32", "i32"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  mkfifo: { parameters: ["buffer", "u32"], result: "i32" },
  // A real symbol since glibc 2.33 (before, only the __xmknod wrapper was).
  mknod: { parameters: ["buffer", "u32", "u64"], result: "i32" },
  lsetxattr: { parameters: ["buffer", "buffer", "buffer", "usize", "i32"], result: "i32" },
  lgetxattr: { parameters: ["buffer", "buffer", "buffer", "usize"], result: "isize" },
  llistxattr: { parameters: ["buffer", "buffer", "usize"], result: "isize" },
  lremovexattr: { parameters: ["buffer", "buffer"], result: "i32" },

  prctl: { parameters: ["i32", "u64", "u64", "u64", "u64"], result: "i32" },
  prctl_ptr: { name: "prctl", parameters: ["i32", "buffer", "u64", "u64", "u64"], result: "i32" },
  setsid: { parameters: [], result: "i32" },
  malloc_trim: { parameters: ["usize"], result: "i32" },
  setns: { parameters: ["i32", "i32"], result: "i32" },
  // pidfd_open and pidfd_send_signal through syscall(2): glibc only wraps
  // them since 2.36, the kernel has had them since 5.3.
  sys_pidfd_open: { name: "syscall", parameters: ["i64", "i32", "u32"], result: "i64" },
  sys_pidfd_send_signal: {
    name: "syscall",
    parameters: ["i64", "i32", "i32", "pointer", "u32"],
    result: "i64",
  },
  waitid: { parameters: ["i32", "u32", "buffer", "i32"], result: "i32" },

  posix_openpt: { parameters: ["i32"], result: "i32" },
  grantpt: { parameters: ["i32"], result: "i32" },
  unlockpt: { parameters: ["i32"], result: "i32" },
  ptsname_r: { parameters: ["i32", "buffer", "usize"], result: "i32" },
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  tcgetattr: { parameters: ["i32", "buffer"], result: "i32" },
  tcsetattr: { parameters: ["i32", "i32", "buffer"], result: "i32" },
  cfmakeraw: { parameters: ["buffer"], result: "void" },

  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  socketpair: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  bind: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  listen: { parameters: ["i32", "i32"], result: "i32" },
  connect: { parameters: ["i32", "buffer", "u32"], result: "i32" },
  accept4: { parameters: ["i32", "pointer", "pointer", "i32"], result: "i32" },
  sendmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  recvmsg: { parameters: ["i32", "buffer", "i32"], result: "isize" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },

  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "buffer"], result: "i32" },
  umount2: { parameters: ["buffer", "i32"], result: "i32" },

  epoll_create1: { parameters: ["i32"], result: "i32" },
  epoll_ctl: { parameters: ["i32", "i32", "i32", "buffer"], result: "i32" },
  epoll_wait: { parameters: ["i32", "buffer", "i32", "i32"], result: "i32" },
  // The one call that runs on a worker thread (see poller.ts): it may wait
  // for as long as nothing happens, and the event loop must not.
  epoll_wait_blocking: {
    name: "epoll_wait",
    parameters: ["i32", "buffer", "i32", "i32"],
    result: "i32",
    nonblocking: true,
  },
  eventfd: { parameters: ["u32", "i32"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;

/** The typed libc symbols. */
export type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

type Name = keyof typeof SYMBOLS;

let symbols: Libc | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

/**
 * libc's symbols. Each one is bound on its first use, by its own small
 * dlopen: binding costs ~0.3 ms per symbol after a one-time ~2.5 ms here
 * (one dlopen of all of them took ~10 ms), so a process pays only for the
 * calls it makes, and the client, which makes none, pays nothing. Once
 * bound, a symbol is a plain property holding the function.
 */
export function libc(): Libc {
  if (symbols) return symbols;
  const lazy = {} as Record<Name, unknown>;
  for (const name of Object.keys(SYMBOLS) as Name[]) {
    Object.defineProperty(lazy, name, {
      configurable: true,
      get() {
        const fn = Deno.dlopen("libc.so.6", { [name]: SYMBOLS[name] }).symbols[name];
        Object.defineProperty(lazy, name, { value: fn });
        return fn;
      },
    });
  }
  symbols = lazy as Libc;
  // Bound now, not after the first failure: binding runs code of its own
  // that could overwrite the errno about to be read.
  const p = symbols.__errno_location();
  if (p === null) throw new Error("__errno_location returned NULL");
  errnoView = new Deno.UnsafePointerView(p);
  return symbols;
}

/**
 * The calling thread's errno. Only meaningful right after a synchronous
 * call that failed: errno is thread-local, and synchronous FFI calls run
 * on this (the JS) thread. Each isolate (Web Worker) loads its own copy of
 * this module, so the cached address always belongs to the current thread.
 */
export function errno(): number {
  if (!errnoView) libc();
  return errnoView!.getInt32(0);
}

/** A {@link SyscallError} for `call` carrying the errno just left by it. */
export function lastError(call: string, detail = ""): SyscallError {
  return new SyscallError(call, errno(), detail);
}

/** Throws the errno of `call` when `ret` is -1; returns `ret` otherwise. */
export function check(ret: number, call: string, detail = ""): number {
  if (ret === -1) throw lastError(call, detail);
  return ret;
}

/** An EINVAL {@link SyscallError} for bad input caught before the call. */
export function invalid(call: string, detail: string): SyscallError {
  return new SyscallError(call, EINVAL, detail);
}

const encoder = new TextEncoder();

/** `s` as a NUL-terminated C string; EINVAL if it holds a NUL itself. */
export function cString(s: string, call: string): Uint8Array<ArrayBuffer> {
  if (s.includes("\0")) throw invalid(call, `${JSON.stringify(s)} contains NUL`);
  return encoder.encode(s + "\0");
}

/** Reads the NUL-terminated string at the start of `buf`. */
export function fromCString(buf: Uint8Array): string {
  const end = buf.indexOf(0);
  return new TextDecoder().decode(end < 0 ? buf : buf.subarray(0, end));
}

/**
 * Memory whose address can be stored inside a struct (msghdr, iovec):
 * backed by its own ArrayBuffer, never by V8's movable on-heap storage.
 */
export function pinned(size: number): Uint8Array<ArrayBuffer> {
  return new Uint8Array(new ArrayBuffer(size));
}

/** The address of `buf` as a 64-bit integer, for a pointer field of a struct. */
export function addressOf(buf: Uint8Array<ArrayBuffer>): bigint {
  return BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(buf)));
}
