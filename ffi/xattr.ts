/**
 * Extended attributes of a path itself, never of a symlink's target (the
 * l*xattr calls): layers record them per tar entry, and overlayfs marks
 * opaque directories with `trusted.overlay.opaque=y`.
 *
 * @example
 * ```ts
 * import { lgetxattr, llistxattr, lsetxattr } from "./xattr.ts";
 * lsetxattr(`${upper}/dir`, "trusted.overlay.opaque", new TextEncoder().encode("y"));
 * llistxattr(`${upper}/dir`); // ["trusted.overlay.opaque"]
 * lgetxattr(`${upper}/dir`, "user.absent"); // null
 * ```
 * @module
 */

import { ENODATA, ERANGE } from "./errno.ts";
import { check, cString, errno, fromCString, invalid, lastError, libc } from "./libc.ts";

/** Flags for {@link lsetxattr} (the XATTR_* values). */
export const XattrFlags = {
  /** Fail with EEXIST if the attribute exists. */
  CREATE: 0x1,
  /** Fail with ENODATA if the attribute does not exist. */
  REPLACE: 0x2,
} as const;

function names(
  path: string,
  name: string,
  call: string,
): [Uint8Array<ArrayBuffer>, Uint8Array<ArrayBuffer>] {
  if (name === "") throw invalid(call, `${path}: empty attribute name`);
  return [cString(path, call), cString(name, call)];
}

/**
 * Sets attribute `name` (e.g. "user.x", "security.capability") of `path`
 * to `value`; `flags` ({@link XattrFlags}) may require it to be new or to
 * exist already. ENOTSUP where the filesystem or namespace has none.
 */
export function lsetxattr(path: string, name: string, value: Uint8Array, flags = 0): void {
  const [p, n] = names(path, name, "lsetxattr");
  if (flags !== 0 && flags !== XattrFlags.CREATE && flags !== XattrFlags.REPLACE) {
    throw invalid("lsetxattr", `bad flags ${flags}`);
  }
  // FFI passes ArrayBuffer-backed memory only; other views are copied.
  const v = value.buffer instanceof ArrayBuffer
    ? value as Uint8Array<ArrayBuffer>
    : new Uint8Array(value);
  check(libc().lsetxattr(p, n, v, BigInt(v.length), flags), "lsetxattr", `${path}, ${name}`);
}

// Asks for the size first, then reads into a buffer of that size; the
// attribute can grow in between (ERANGE), in which case it asks again.
function readSized(
  call: string,
  detail: string,
  read: (buf: Uint8Array<ArrayBuffer> | null, size: bigint) => number | bigint,
): Uint8Array | null {
  for (;;) {
    const size = Number(read(null, 0n));
    if (size === -1) {
      if (errno() === ENODATA) return null;
      throw lastError(call, detail);
    }
    if (size === 0) return new Uint8Array(0);
    const buf = new Uint8Array(size);
    const n = Number(read(buf, BigInt(size)));
    if (n >= 0) return buf.subarray(0, n);
    const e = errno();
    if (e === ENODATA) return null;
    if (e !== ERANGE) throw lastError(call, detail);
  }
}

/**
 * The value of attribute `name` of `path`, or null when `path` has no
 * such attribute (ENODATA).
 */
export function lgetxattr(path: string, name: string): Uint8Array | null {
  const [p, n] = names(path, name, "lgetxattr");
  return readSized(
    "lgetxattr",
    `${path}, ${name}`,
    (buf, size) => libc().lgetxattr(p, n, buf, size),
  );
}

/**
 * The names of `path`'s attributes, in the filesystem's order (only those
 * this process may see: trusted.* needs CAP_SYS_ADMIN).
 */
export function llistxattr(path: string): string[] {
  const p = cString(path, "llistxattr");
  const list = readSized("llistxattr", path, (buf, size) => libc().llistxattr(p, buf, size));
  const out: string[] = [];
  // The list is NUL-terminated names back to back.
  let start = 0;
  for (let i = 0; list && i < list.length; i++) {
    if (list[i] === 0) {
      if (i > start) out.push(fromCString(list.subarray(start, i)));
      start = i + 1;
    }
  }
  return out;
}

/** Removes attribute `name` of `path`; ENODATA if it has none of that name. */
export function lremovexattr(path: string, name: string): void {
  const [p, n] = names(path, name, "lremovexattr");
  check(libc().lremovexattr(p, n), "lremovexattr", `${path}, ${name}`);
}
