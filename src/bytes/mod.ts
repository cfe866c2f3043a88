/**
 * Byte helpers shared by the framers and encoders (SPDY, websocket, HTTP,
 * tar PAX records): dependency-free, so any module may import it.
 * @module
 */

/** The bytes of `parts`, one after another, in a new array. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Writes `value` into `buf` at `at` as a big-endian 32-bit unsigned integer (network order). */
export function putUint32(buf: Uint8Array, at: number, value: number): void {
  buf[at] = value >>> 24;
  buf[at + 1] = value >>> 16;
  buf[at + 2] = value >>> 8;
  buf[at + 3] = value;
}
