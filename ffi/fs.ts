/**
 * File-system calls Deno lacks: named pipes, which the shim's process IO
 * uses (containerd hands a task its stdio as fifo paths), and device nodes,
 * which layers carry (overlayfs whiteouts are 0/0 character devices).
 * @module
 */

import { check, cString, invalid, libc } from "./libc.ts";

/**
 * Makes a fifo at `path` with permission bits `mode` (less the umask).
 * EEXIST if the path exists.
 *
 * @example
 * ```ts
 * mkfifo("/run/berth/c1/stdout", 0o600);
 * ```
 */
export function mkfifo(path: string, mode = 0o600): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw invalid("mkfifo", `bad mode ${mode}`);
  }
  check(libc().mkfifo(cString(path, "mkfifo"), mode), "mkfifo", path);
}

const O_RDONLY = 0;
const O_RDWR = 2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;

/**
 * Opens the fifo at `path` without waiting for the other side, as a raw fd
 * (O_NONBLOCK, close-on-exec) for {@link import("./fd.ts").readFd},
 * {@link import("./fd.ts").writeFd} and {@link import("./fd.ts").close}:
 * its reads and writes wait on the poller, not on one of Deno's few
 * blocking threads (a Deno.FsFile read of an idle fifo holds one for as
 * long as it waits). "read" is O_RDONLY; "readwrite" is O_RDWR, the only
 * way to hold a writing end before a reader exists (Linux never blocks or
 * fails that open), and it keeps the fifo from ever reporting end of file
 * or EPIPE while it is open.
 *
 * @example
 * ```ts
 * const out = openFifo("/run/ctr/c1-stdout", "readwrite");
 * await writeFd(out, new TextEncoder().encode("hello\n"));
 * close(out);
 * ```
 */
export function openFifo(path: string, access: "read" | "readwrite"): number {
  const flags = (access === "read" ? O_RDONLY : O_RDWR) | O_NONBLOCK | O_CLOEXEC;
  return check(libc().open(cString(path, "open"), flags, 0), "open", path);
}

/** File type bits for {@link mknod}'s mode (the S_IF* values). */
export const NodeType = {
  /** An empty regular file. */
  REGULAR: 0o100000,
  /** A character device. */
  CHAR: 0o020000,
  /** A block device. */
  BLOCK: 0o060000,
  /** A named pipe. */
  FIFO: 0o010000,
  /** A unix socket's file (unconnected: nothing listens on it). */
  SOCKET: 0o140000,
} as const;

const NODE_TYPES = new Set<number>(Object.values(NodeType));
const TYPE_MASK = 0o170000;

function checkDevPart(n: number, what: string, call: string): bigint {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw invalid(call, `bad ${what} ${n}`);
  return BigInt(n);
}

/**
 * The device number of `major`:`minor` (each 0..2^32-1), laid out as
 * Linux's 64-bit dev_t (glibc's makedev): minor's low byte, then major's
 * low 12 bits, then the rest of minor, then the rest of major.
 *
 * @example
 * ```ts
 * makedev(1, 3); // /dev/null: 259n
 * ```
 */
export function makedev(major: number, minor: number): bigint {
  const ma = checkDevPart(major, "major", "makedev");
  const mi = checkDevPart(minor, "minor", "makedev");
  return ((ma & 0xfffff000n) << 32n) | ((ma & 0xfffn) << 8n) | ((mi & 0xffffff00n) << 12n) |
    (mi & 0xffn);
}

/** The major number of device number `dev` (e.g. a FileInfo's `rdev`). */
export function devMajor(dev: number | bigint): number {
  const d = BigInt(dev);
  return Number(((d >> 32n) & 0xfffff000n) | ((d >> 8n) & 0xfffn));
}

/** The minor number of device number `dev` (e.g. a FileInfo's `rdev`). */
export function devMinor(dev: number | bigint): number {
  const d = BigInt(dev);
  return Number(((d >> 12n) & 0xffffff00n) | (d & 0xffn));
}

/**
 * Makes a node at `path`: `mode` is one {@link NodeType} (0 meaning
 * REGULAR) or'ed with permission bits (less the umask); `dev` is the
 * device number from {@link makedev}, used only for CHAR and BLOCK.
 * Devices need CAP_MKNOD; EEXIST if the path exists.
 *
 * @example
 * ```ts
 * // an overlayfs whiteout: hides "gone" of the lower layers
 * mknod(`${upper}/gone`, NodeType.CHAR, makedev(0, 0));
 * ```
 */
export function mknod(path: string, mode: number, dev: bigint | number = 0n): void {
  if (!Number.isInteger(mode) || mode < 0 || (mode & ~(TYPE_MASK | 0o7777)) !== 0) {
    throw invalid("mknod", `bad mode 0o${mode.toString(8)}`);
  }
  const type = mode & TYPE_MASK;
  if (type !== 0 && !NODE_TYPES.has(type)) {
    throw invalid("mknod", `bad file type 0o${type.toString(8)} in mode`);
  }
  const d = BigInt(dev);
  if (d < 0n || d > 0xffffffffffffffffn) throw invalid("mknod", `bad device number ${dev}`);
  check(
    libc().mknod(cString(path, "mknod"), mode, d),
    "mknod",
    `${path}, 0o${mode.toString(8)}, ${devMajor(d)}:${devMinor(d)}`,
  );
}
