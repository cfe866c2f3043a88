/**
 * Terminals: new pseudo-terminals, window sizes, and raw mode for the
 * client's own terminal (`run -t`) or a container's console.
 *
 * @example
 * ```ts
 * import { makeRaw, restoreTermios } from "./terminal.ts";
 * const saved = makeRaw(0);
 * try { ... } finally { restoreTermios(0, saved); }
 * ```
 * @module
 */

import { SyscallError } from "./errno.ts";
import { check, errno, fromCString, invalid, libc } from "./libc.ts";
import { close } from "./fd.ts";

const O_RDWR = 2;
const O_NOCTTY = 0o400;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
const TIOCGWINSZ = 0x5413n;
const TIOCSWINSZ = 0x5414n;
const TCSANOW = 0;
// glibc's struct termios: four u32 flag words, c_line, c_cc[32], padding,
// then c_ispeed and c_ospeed.
const TERMIOS_SIZE = 60;
const NCCS = 32;

/** A new pseudo-terminal pair. */
export interface Pty {
  /** The master side, O_NONBLOCK and close-on-exec: berth reads/writes it. */
  master: number;
  /** The slave side (blocking, close-on-exec): the process's terminal. */
  slave: number;
  /** The slave's path, e.g. /dev/pts/3. */
  path: string;
}

/** A terminal's size in character cells (and pixels, rarely set). */
export interface Winsize {
  rows: number;
  cols: number;
  xPixels?: number;
  yPixels?: number;
}

/** A terminal's settings (struct termios), as saved by {@link makeRaw}. */
export interface Termios {
  iflag: number;
  oflag: number;
  cflag: number;
  lflag: number;
  line: number;
  /** The control characters (c_cc), 32 bytes. */
  cc: Uint8Array;
  ispeed: number;
  ospeed: number;
}

/**
 * Opens a new pseudo-terminal: the master from /dev/ptmx, granted and
 * unlocked, and its slave opened without becoming our controlling tty.
 */
export function openPty(): Pty {
  const lib = libc();
  const master = check(
    lib.posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC | O_NONBLOCK),
    "posix_openpt",
  );
  try {
    check(lib.grantpt(master), "grantpt", String(master));
    check(lib.unlockpt(master), "unlockpt", String(master));
    const path = ptsName(master);
    const cpath = new TextEncoder().encode(path + "\0");
    const slave = check(lib.open(cpath, O_RDWR | O_NOCTTY | O_CLOEXEC, 0), "open", path);
    return { master, slave, path };
  } catch (err) {
    close(master);
    throw err;
  }
}

/** The path of the slave side of pty master `master`, e.g. /dev/pts/3. */
export function ptsName(master: number): string {
  const buf = new Uint8Array(128);
  // ptsname_r returns the error number itself rather than -1.
  const r = libc().ptsname_r(master, buf, BigInt(buf.length));
  if (r !== 0) throw new SyscallError("ptsname_r", r === -1 ? errno() : r, String(master));
  return fromCString(buf);
}

/** The window size of terminal `fd` (ioctl TIOCGWINSZ). */
export function getWinsize(fd: number): Winsize {
  const ws = new Uint16Array(4);
  check(libc().ioctl(fd, TIOCGWINSZ, ws), "ioctl", `${fd}, TIOCGWINSZ`);
  return { rows: ws[0], cols: ws[1], xPixels: ws[2], yPixels: ws[3] };
}

/**
 * Sets the window size of terminal `fd` (ioctl TIOCSWINSZ); the process in
 * the foreground of that terminal gets SIGWINCH. Works on either side.
 */
export function setWinsize(fd: number, size: Winsize): void {
  const fields = [size.rows, size.cols, size.xPixels ?? 0, size.yPixels ?? 0];
  if (fields.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffff)) {
    throw invalid("ioctl", `${fd}, TIOCSWINSZ: sizes must be integers in 0..65535`);
  }
  check(libc().ioctl(fd, TIOCSWINSZ, new Uint16Array(fields)), "ioctl", `${fd}, TIOCSWINSZ`);
}

function decode(buf: Uint8Array<ArrayBuffer>): Termios {
  const v = new DataView(buf.buffer);
  return {
    iflag: v.getUint32(0, true),
    oflag: v.getUint32(4, true),
    cflag: v.getUint32(8, true),
    lflag: v.getUint32(12, true),
    line: buf[16],
    cc: buf.slice(17, 17 + NCCS),
    ispeed: v.getUint32(52, true),
    ospeed: v.getUint32(56, true),
  };
}

function encode(t: Termios): Uint8Array<ArrayBuffer> {
  const buf = new Uint8Array(TERMIOS_SIZE);
  const v = new DataView(buf.buffer);
  v.setUint32(0, t.iflag, true);
  v.setUint32(4, t.oflag, true);
  v.setUint32(8, t.cflag, true);
  v.setUint32(12, t.lflag, true);
  buf[16] = t.line;
  buf.set(t.cc.subarray(0, NCCS), 17);
  v.setUint32(52, t.ispeed, true);
  v.setUint32(56, t.ospeed, true);
  return buf;
}

/** The current settings of terminal `fd`; ENOTTY if it is no terminal. */
export function tcgetattr(fd: number): Termios {
  const buf = new Uint8Array(TERMIOS_SIZE);
  check(libc().tcgetattr(fd, buf), "tcgetattr", String(fd));
  return decode(buf);
}

/** Applies `termios` to terminal `fd` at once (TCSANOW). */
export function tcsetattr(fd: number, termios: Termios): void {
  check(libc().tcsetattr(fd, TCSANOW, encode(termios)), "tcsetattr", String(fd));
}

/**
 * Puts terminal `fd` in raw mode (no echo, no line editing, no signal keys,
 * no output processing: bytes pass through unchanged, as cfmakeraw sets)
 * and returns the settings it had, for {@link restoreTermios}.
 */
export function makeRaw(fd: number): Termios {
  const saved = tcgetattr(fd);
  const raw = encode(saved);
  libc().cfmakeraw(raw);
  check(libc().tcsetattr(fd, TCSANOW, raw), "tcsetattr", String(fd));
  return saved;
}

/** Puts back settings saved by {@link makeRaw}. */
export function restoreTermios(fd: number, saved: Termios): void {
  tcsetattr(fd, saved);
}
