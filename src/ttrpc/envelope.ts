/**
 * The ttrpc envelopes, `ttrpc.Request` and `ttrpc.Response` (with its
 * `google.rpc.Status`), encoded and decoded by hand. They are on every call,
 * so they skip the reflection of the generated codec and write straight into
 * the frame writer's buffer; `envelope_test.ts` checks them against the
 * generated schemas in src/gen/ttrpc/request_pb.ts, byte for byte.
 *
 * Field numbers (ttrpc request.proto): Request{service=1, method=2,
 * payload=3, timeout_nano=4, metadata=5 (KeyValue{key=1, value=2})},
 * Response{status=1 (Status{code=1, message=2, details=3}), payload=2}.
 *
 * @module
 */

import { type FrameWriter, MessageType } from "./channel.ts";

/** A request envelope as the server sees it. */
export interface RequestEnvelope {
  /** Full service name, e.g. "containerd.task.v2.Task". */
  service: string;
  /** Method name, e.g. "State". */
  method: string;
  /** The encoded request message; undefined when the field was absent. */
  payload: Uint8Array | undefined;
  /** Relative deadline in nanoseconds; 0 for none, negative for "already late". */
  timeoutNano: number;
  /** Metadata pairs in wire order; undefined when there were none. */
  metadata: Array<[string, string]> | undefined;
}

/** A response envelope as the client sees it. */
export interface ResponseEnvelope {
  /** gRPC status code; 0 when OK or absent. */
  code: number;
  /** Status message. */
  message: string;
  /** The encoded response message (empty when absent). */
  payload: Uint8Array;
}

/** The envelope bytes could not be parsed. */
export class EnvelopeError extends Error {
  /** Makes an error naming what was malformed. */
  constructor(message: string) {
    super(message);
    this.name = "EnvelopeError";
  }
}

const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Bytes `s` takes in UTF-8. */
export function utf8Length(s: string): number {
  let n = s.length;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 2; // 4 bytes for 2 code units
        i++;
      } else n += 2;
    } else n += 2;
  }
  return n;
}

function writeUtf8(buf: Uint8Array, at: number, s: string, byteLength: number): number {
  if (byteLength === s.length) {
    for (let i = 0; i < byteLength; i++) buf[at + i] = s.charCodeAt(i);
  } else {
    encoder.encodeInto(s, buf.subarray(at, at + byteLength));
  }
  return at + byteLength;
}

function readUtf8(buf: Uint8Array, start: number, end: number): string {
  if (end - start < 48) {
    // Names and short values are ASCII: skip the decoder's call overhead.
    let ascii = true;
    for (let i = start; i < end; i++) {
      if (buf[i] >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) {
      return String.fromCharCode.apply(null, buf.subarray(start, end) as unknown as number[]);
    }
  }
  return decoder.decode(buf.subarray(start, end));
}

/** Bytes a varint for unsigned `v` (< 2^53) takes. */
export function varintLength(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  let n = 4;
  v = Math.floor(v / 0x10000000);
  while (v > 0) {
    n++;
    v = Math.floor(v / 0x80);
  }
  return n;
}

function writeVarint(buf: Uint8Array, at: number, v: number): number {
  while (v >= 0x80) {
    buf[at++] = (v % 0x80) | 0x80;
    v = Math.floor(v / 0x80);
  }
  buf[at++] = v;
  return at;
}

// Decoding cursor shared by the readers below; envelopes are decoded
// synchronously, one at a time, so one cursor is enough.
let pos = 0;

function readVarint32(buf: Uint8Array, end: number): number {
  let v = 0;
  let shift = 0;
  while (true) {
    if (pos >= end) throw new EnvelopeError("truncated varint");
    const b = buf[pos++];
    if (shift < 28) v |= (b & 0x7f) << shift;
    else if (shift === 28) v |= (b & 0x0f) << 28;
    if (b < 0x80) return v;
    shift += 7;
    if (shift > 63) throw new EnvelopeError("varint too long");
  }
}

/** Reads an int64 varint as a number (exact below 2^53), keeping the sign. */
function readVarint64(buf: Uint8Array, end: number): number {
  let lo = 0;
  let hi = 0;
  let shift = 0;
  while (true) {
    if (pos >= end) throw new EnvelopeError("truncated varint");
    const b = buf[pos++];
    if (shift < 28) lo |= (b & 0x7f) << shift;
    else if (shift === 28) {
      lo |= (b & 0x0f) << 28;
      hi |= (b & 0x7f) >> 4;
    } else hi |= (b & 0x7f) << (shift - 32);
    if (b < 0x80) break;
    shift += 7;
    if (shift > 63) throw new EnvelopeError("varint too long");
  }
  lo >>>= 0;
  if (hi & 0x80000000) return -((~hi >>> 0) * 0x100000000 + (~lo >>> 0) + 1);
  return (hi >>> 0) * 0x100000000 + lo;
}

function readLength(buf: Uint8Array, end: number): number {
  const n = readVarint32(buf, end) >>> 0;
  if (n > end - pos) throw new EnvelopeError("length-delimited field overruns the message");
  return n;
}

function skipField(buf: Uint8Array, end: number, wireType: number): void {
  switch (wireType) {
    case 0:
      readVarint64(buf, end);
      return;
    case 1:
      pos += 8;
      break;
    case 2: {
      const n = readLength(buf, end);
      pos += n;
      return;
    }
    case 5:
      pos += 4;
      break;
    default:
      throw new EnvelopeError(`unsupported wire type ${wireType}`);
  }
  if (pos > end) throw new EnvelopeError("truncated fixed-width field");
}

/**
 * Encodes the service and method fields once, so each call only appends the
 * payload, deadline and metadata after them.
 */
export function requestPrefix(service: string, method: string): Uint8Array {
  // Empty strings are left out, as proto3 encoders do.
  const sl = utf8Length(service);
  const ml = utf8Length(method);
  const out = new Uint8Array(
    (sl > 0 ? 1 + varintLength(sl) + sl : 0) + (ml > 0 ? 1 + varintLength(ml) + ml : 0),
  );
  let at = 0;
  if (sl > 0) {
    out[at++] = 0x0a;
    at = writeVarint(out, at, sl);
    at = writeUtf8(out, at, service, sl);
  }
  if (ml > 0) {
    out[at++] = 0x12;
    at = writeVarint(out, at, ml);
    writeUtf8(out, at, method, ml);
  }
  return out;
}

/** Encodes metadata pairs as repeated `KeyValue` fields (field 5), ready to append. */
export function encodeMetadata(pairs: Iterable<[string, string]>): Uint8Array {
  const items: Array<[string, number, string, number]> = [];
  let total = 0;
  for (const [k, v] of pairs) {
    const kl = utf8Length(k);
    const vl = utf8Length(v);
    const inner = (kl > 0 ? 1 + varintLength(kl) + kl : 0) +
      (vl > 0 ? 1 + varintLength(vl) + vl : 0);
    total += 1 + varintLength(inner) + inner;
    items.push([k, kl, v, vl]);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const [k, kl, v, vl] of items) {
    const inner = (kl > 0 ? 1 + varintLength(kl) + kl : 0) +
      (vl > 0 ? 1 + varintLength(vl) + vl : 0);
    out[at++] = 0x2a;
    at = writeVarint(out, at, inner);
    if (kl > 0) {
      out[at++] = 0x0a;
      at = writeVarint(out, at, kl);
      at = writeUtf8(out, at, k, kl);
    }
    if (vl > 0) {
      out[at++] = 0x12;
      at = writeVarint(out, at, vl);
      at = writeUtf8(out, at, v, vl);
    }
  }
  return out;
}

/**
 * Queues a Request frame: `prefix` from {@link requestPrefix}, the payload
 * (omitted when undefined, as a streaming client does), a relative deadline
 * in nanoseconds (0 for none) and pre-encoded metadata.
 */
export function writeRequest(
  w: FrameWriter,
  streamId: number,
  flags: number,
  prefix: Uint8Array,
  payload: Uint8Array | undefined,
  timeoutNano: number,
  metadata: Uint8Array | undefined,
): void {
  let length = prefix.length;
  if (payload !== undefined && payload.length > 0) {
    length += 1 + varintLength(payload.length) + payload.length;
  }
  if (timeoutNano > 0) length += 1 + varintLength(timeoutNano);
  if (metadata !== undefined) length += metadata.length;
  let at = w.reserve(streamId, MessageType.Request, flags, length);
  const buf = w.buffer;
  buf.set(prefix, at);
  at += prefix.length;
  if (payload !== undefined && payload.length > 0) {
    buf[at++] = 0x1a;
    at = writeVarint(buf, at, payload.length);
    buf.set(payload, at);
    at += payload.length;
  }
  if (timeoutNano > 0) {
    buf[at++] = 0x20;
    at = writeVarint(buf, at, timeoutNano);
  }
  if (metadata !== undefined) buf.set(metadata, at);
}

/** Decodes a Request envelope; throws {@link EnvelopeError} on malformed bytes. */
export function decodeRequest(buf: Uint8Array): RequestEnvelope {
  const end = buf.length;
  const req: RequestEnvelope = {
    service: "",
    method: "",
    payload: undefined,
    timeoutNano: 0,
    metadata: undefined,
  };
  pos = 0;
  while (pos < end) {
    const tag = readVarint32(buf, end);
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 1 && wire === 2) {
      const n = readLength(buf, end);
      req.service = readUtf8(buf, pos, pos + n);
      pos += n;
    } else if (field === 2 && wire === 2) {
      const n = readLength(buf, end);
      req.method = readUtf8(buf, pos, pos + n);
      pos += n;
    } else if (field === 3 && wire === 2) {
      const n = readLength(buf, end);
      req.payload = buf.subarray(pos, pos + n);
      pos += n;
    } else if (field === 4 && wire === 0) {
      req.timeoutNano = readVarint64(buf, end);
    } else if (field === 5 && wire === 2) {
      const n = readLength(buf, end);
      const kvEnd = pos + n;
      let key = "";
      let value = "";
      while (pos < kvEnd) {
        const t = readVarint32(buf, kvEnd);
        if (t === 0x0a || t === 0x12) {
          const m = readLength(buf, kvEnd);
          const s = readUtf8(buf, pos, pos + m);
          pos += m;
          if (t === 0x0a) key = s;
          else value = s;
        } else skipField(buf, kvEnd, t & 7);
      }
      (req.metadata ??= []).push([key, value]);
    } else if (field === 0) {
      throw new EnvelopeError("field number 0 is invalid");
    } else {
      skipField(buf, end, wire);
    }
  }
  return req;
}

/**
 * Queues a Response frame with status `code`/`message` and `payload`. The
 * status field is always present (an empty Status when OK), as Go's ttrpc
 * server sends it and its oldest clients expect it.
 */
export function writeResponse(
  w: FrameWriter,
  streamId: number,
  code: number,
  message: string,
  payload: Uint8Array | undefined,
): void {
  let statusLength = 0;
  let ml = 0;
  if (code !== 0) statusLength += 1 + varintLength(code);
  if (message.length > 0) {
    ml = utf8Length(message);
    statusLength += 1 + varintLength(ml) + ml;
  }
  let length = 1 + varintLength(statusLength) + statusLength;
  const pl = payload === undefined ? 0 : payload.length;
  if (pl > 0) length += 1 + varintLength(pl) + pl;
  let at = w.reserve(streamId, MessageType.Response, 0, length);
  const buf = w.buffer;
  buf[at++] = 0x0a;
  at = writeVarint(buf, at, statusLength);
  if (code !== 0) {
    buf[at++] = 0x08;
    at = writeVarint(buf, at, code);
  }
  if (ml > 0) {
    buf[at++] = 0x12;
    at = writeVarint(buf, at, ml);
    at = writeUtf8(buf, at, message, ml);
  }
  if (pl > 0) {
    buf[at++] = 0x12;
    at = writeVarint(buf, at, pl);
    buf.set(payload!, at);
  }
}

/** Bytes of a Response envelope with this status and payload length (for limit checks). */
export function responseLength(code: number, message: string, payloadLength: number): number {
  let statusLength = code !== 0 ? 1 + varintLength(code) : 0;
  if (message.length > 0) {
    const ml = utf8Length(message);
    statusLength += 1 + varintLength(ml) + ml;
  }
  let length = 1 + varintLength(statusLength) + statusLength;
  if (payloadLength > 0) length += 1 + varintLength(payloadLength) + payloadLength;
  return length;
}

/** Decodes a Response envelope; throws {@link EnvelopeError} on malformed bytes. */
export function decodeResponse(buf: Uint8Array): ResponseEnvelope {
  const end = buf.length;
  const resp: ResponseEnvelope = { code: 0, message: "", payload: EMPTY };
  pos = 0;
  while (pos < end) {
    const tag = readVarint32(buf, end);
    if (tag === 0x0a) {
      const n = readLength(buf, end);
      const stEnd = pos + n;
      while (pos < stEnd) {
        const t = readVarint32(buf, stEnd);
        if (t === 0x08) resp.code = readVarint64(buf, stEnd);
        else if (t === 0x12) {
          const m = readLength(buf, stEnd);
          resp.message = readUtf8(buf, pos, pos + m);
          pos += m;
        } else skipField(buf, stEnd, t & 7);
      }
    } else if (tag === 0x12) {
      const n = readLength(buf, end);
      resp.payload = buf.subarray(pos, pos + n);
      pos += n;
    } else if (tag >>> 3 === 0) {
      throw new EnvelopeError("field number 0 is invalid");
    } else {
      skipField(buf, end, tag & 7);
    }
  }
  return resp;
}
