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
