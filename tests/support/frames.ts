/**
 * Raw frames for tests that speak to the daemon's sockets byte by byte
 * (fuzzers, peers running as another user): HTTP/2 and ttrpc framing only.
 */
import { concat } from "./fuzz.ts";

/** The HTTP/2 client connection preface. */
export const H2_PREFACE: Uint8Array = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** One HTTP/2 frame: 9-byte header (length, type, flags, stream) and payload. */
export function h2Frame(
  type: number,
  flags: number,
  stream: number,
  payload: Uint8Array,
): Uint8Array {
  const h = new Uint8Array(9);
  h[0] = payload.length >>> 16;
  h[1] = payload.length >>> 8;
  h[2] = payload.length;
  h[3] = type;
  h[4] = flags;
  new DataView(h.buffer).setUint32(5, stream);
  return concat(h, payload);
}

/** One ttrpc frame: 10-byte header (length, stream id, type, flags) and payload. */
export function ttrpcFrame(
  id: number,
  type: number,
  flags: number,
  payload: Uint8Array,
): Uint8Array {
  const h = new Uint8Array(10);
  const v = new DataView(h.buffer);
  v.setUint32(0, payload.length);
  v.setUint32(4, id);
  h[8] = type;
  h[9] = flags;
  return concat(h, payload);
}
