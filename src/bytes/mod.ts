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
