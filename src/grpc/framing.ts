/**
 * The pieces of the gRPC-over-HTTP/2 wire format that are not HTTP/2
 * itself: length-prefixed messages (gzip-compressed ones included), the
 * `grpc-timeout` header and the percent-encoding of `grpc-message`. Pure
 * functions, no I/O.
 *
 * @module
 */

import { putUint32 } from "../bytes/mod.ts";
import { BerthError, Code } from "../errdefs/mod.ts";

/** Bytes before each message on a gRPC stream: a compressed flag and a big-endian length. */
export const PREFIX_LENGTH = 5;

/** containerd's default limit for a message in either direction (16 MiB). */
export const MAX_GRPC_MESSAGE = 16 << 20;

/** The message encodings berth decodes besides identity, as `grpc-accept-encoding` lists them. */
export const ACCEPT_ENCODING = "gzip";

// Loaded on the first compressed message: most peers never compress, and a
// static node: import costs every start of the bundle (~25 ms). Its sync
// gunzip with maxOutputLength stops inflating at the limit (a zip bomb costs
// a few ms); DecompressionStream inflates a whole chunk before the reader
// can refuse it, and costs ~5x more per small message.
let nodeZlib: typeof import("node:zlib") | undefined;
const zlib = () => nodeZlib ??= process.getBuiltinModule("node:zlib") as typeof import("node:zlib");

/**
 * Inflates a gzip-compressed message, refusing (ResourceExhausted) to
 * produce more than `limit` bytes; corrupt input is Internal.
 */
export function gunzipMessage(data: Uint8Array, limit: number): Uint8Array {
  let out: Uint8Array;
  try {
    out = zlib().gunzipSync(data, { maxOutputLength: Math.max(1, limit) });
  } catch (err) {
    if ((err as { code?: string }).code === "ERR_BUFFER_TOO_LARGE") out = tooLarge(limit);
    else {
      throw new BerthError(
        Code.Internal,
        `grpc: failed to decompress the received message: ${(err as Error).message}`,
      );
    }
  }
  if (out.length > limit) tooLarge(limit);
  // A plain view of node's Buffer: the same bytes, the type callers expect.
  return new Uint8Array(out.buffer, out.byteOffset, out.length);
}

function tooLarge(limit: number): never {
  throw new BerthError(
    Code.ResourceExhausted,
    `grpc: received message after decompression larger than max (${limit})`,
  );
}

/** `message` gzip-compressed (for a peer that sends or accepts `grpc-encoding: gzip`). */
export function gzipMessage(message: Uint8Array): Uint8Array {
  return zlib().gzipSync(message);
}

/** One message with its 5-byte prefix; `compressed` sets the flag (the bytes are already compressed). */
export function frameMessage(message: Uint8Array, compressed = false): Uint8Array {
  const out = new Uint8Array(PREFIX_LENGTH + message.length);
  const len = message.length;
  if (compressed) out[0] = 1;
  putUint32(out, 1, len);
  out.set(message, PREFIX_LENGTH);
  return out;
}

/**
 * Cuts the messages out of a stream's DATA chunks, which split and join
 * messages arbitrarily. `push` returns the messages the chunk completed.
 */
export class MessageReader {
  // Unconsumed chunks; a large message arrives as many DATA frames and is
  // joined once, when complete (joining on every chunk would be quadratic).
  #chunks: Uint8Array[] = [];
  #held = 0;
  #limit: number;
  /**
   * The stream's `grpc-encoding` when it is gzip: messages flagged
   * compressed are inflated. Undefined (identity or no header): a flagged
   * message is Internal, as grpc-go answers.
   */
  encoding: "gzip" | undefined;

  constructor(limit = MAX_GRPC_MESSAGE, encoding?: "gzip") {
    this.#limit = limit;
    this.encoding = encoding;
  }

  /** Bytes held for a message not yet complete. */
  get pending(): number {
    return this.#held;
  }

  /**
   * Adds a chunk; returns the complete messages, inflated when compressed.
   * Throws ResourceExhausted for a message over the limit (on the wire, or
   * once inflated) and Internal for a compressed one on a stream without
   * an encoding, or a bad flag. The chunk is kept, not copied: callers
   * hand over buffers they do not reuse.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#held += chunk.length;
    }
    const out: Uint8Array[] = [];
    while (this.#held >= PREFIX_LENGTH) {
      const head = this.#peek(PREFIX_LENGTH);
      const flag = head[0];
      const len = ((head[1] << 24) >>> 0) + (head[2] << 16) + (head[3] << 8) + head[4];
      if (flag !== 0 && (flag !== 1 || this.encoding === undefined)) {
        throw new BerthError(
          Code.Internal,
          flag === 1
            ? "grpc: compressed flag set with identity or empty encoding"
            : `grpc: bad message flag ${flag}`,
        );
      }
      if (len > this.#limit) {
        throw new BerthError(
          Code.ResourceExhausted,
          `grpc: received message larger than max (${len} vs. ${this.#limit})`,
        );
      }
      if (this.#held < PREFIX_LENGTH + len) break;
      const message = this.#take(PREFIX_LENGTH + len).subarray(PREFIX_LENGTH);
      out.push(flag === 0 ? message : gunzipMessage(message, this.#limit));
    }
    return out;
  }

  /** The first `n` held bytes (a view when the first chunk holds them). */
  #peek(n: number): Uint8Array {
    const first = this.#chunks[0];
    if (first.length >= n) return first.subarray(0, n);
    const out = new Uint8Array(n);
    let off = 0;
    for (const c of this.#chunks) {
      const part = c.subarray(0, Math.min(c.length, n - off));
      out.set(part, off);
      off += part.length;
      if (off === n) break;
    }
    return out;
  }

  /** Removes and returns the first `n` held bytes. */
  #take(n: number): Uint8Array {
    this.#held -= n;
    const first = this.#chunks[0];
    if (first.length > n) {
      this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.#chunks.shift();
      return first;
    }
    const out = new Uint8Array(n);
    let off = 0;
    let used = 0;
    while (off < n) {
      const c = this.#chunks[used];
      const want = n - off;
      if (c.length <= want) {
        out.set(c, off);
        off += c.length;
        used++;
      } else {
        out.set(c.subarray(0, want), off);
        this.#chunks[used] = c.subarray(want);
        off += want;
      }
    }
    this.#chunks.splice(0, used);
    return out;
  }
}

const TIMEOUT_UNITS_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 1e-3,
  n: 1e-6,
};

/**
 * A `grpc-timeout` value ("1-8 digits then H, M, S, m, u or n") in
 * milliseconds; undefined when absent, InvalidArgument when malformed.
 */
export function parseTimeout(value: string | undefined): number | undefined {
  if (value === undefined || value === "") return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(value);
  if (m === null) {
    throw new BerthError(
      Code.InvalidArgument,
      `grpc: malformed grpc-timeout ${JSON.stringify(value)}`,
    );
  }
  return Number(m[1]) * TIMEOUT_UNITS_MS[m[2]];
}

/** A timeout in ms as a `grpc-timeout` value (as the spec allows: at most 8 digits). */
export function formatTimeout(ms: number): string {
  const t = Math.max(0, Math.ceil(ms));
  if (t < 1e8) return `${t}m`;
  if (t / 1000 < 1e8) return `${Math.ceil(t / 1000)}S`;
  return `${Math.min(99_999_999, Math.ceil(t / 60_000))}M`;
}

/**
 * Longest `grpc-message` value sent, encoded (8 KiB): an error that quotes
 * a whole log or file must not make a trailer block larger than the
 * peer's header list limit, which would cost the call its status.
 */
export const MAX_STATUS_MESSAGE = 8 << 10;

const TRUNCATED = "...";

/**
 * `grpc-message` encoding: UTF-8, with bytes outside printable ASCII and
 * '%' itself written as %XX. A value longer than `max` is cut at a
 * character boundary (never inside an escape or a UTF-8 sequence) and
 * ends in "...".
 */
export function encodeStatusMessage(message: string, max = MAX_STATUS_MESSAGE): string {
  let plain = true;
  for (let i = 0; i < message.length; i++) {
    const c = message.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) {
    return message.length <= max ? message : message.slice(0, max - TRUNCATED.length) + TRUNCATED;
  }
  let out = "";
  const enc = new TextEncoder();
  const room = max - TRUNCATED.length;
  let fits = 0; // how much of `out` fits with the marker after it
  for (const ch of message) {
    let part = "";
    for (const b of enc.encode(ch)) {
      part += b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : "%" + b.toString(16).toUpperCase().padStart(2, "0");
    }
    if (out.length + part.length > max) return out.slice(0, fits) + TRUNCATED;
    out += part;
    if (out.length <= room) fits = out.length;
  }
  return out;
}

/** Reverses {@link encodeStatusMessage}; malformed escapes are kept as they are. */
export function decodeStatusMessage(value: string): string {
  if (!value.includes("%")) return value;
  const bytes: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x25 && /^[0-9a-fA-F]{2}$/.test(value.slice(i + 1, i + 3))) {
      bytes.push(parseInt(value.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(c);
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}
