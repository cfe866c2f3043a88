/**
 * SPDY/3.1 framing: the nine frame types as plain objects, their encoding,
 * and an incremental decoder that takes bytes as they arrive. Header blocks
 * stay compressed here; {@link ./spdy_headers.ts} (de)compresses them.
 * Frame layout, flags and type numbers are SPDY/3's (draft-mbelshe-httpbis-spdy-00).
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { concatBytes } from "../bytes/mod.ts";

/** SPDY's version number in every control frame. */
export const SPDY_VERSION = 3;

/** Control frame type numbers. */
export enum FrameType {
  SynStream = 1,
  SynReply = 2,
  RstStream = 3,
  Settings = 4,
  Ping = 6,
  GoAway = 7,
  Headers = 8,
  WindowUpdate = 9,
}

/** FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS. */
export const FLAG_FIN = 0x01;
/** UNIDIRECTIONAL on SYN_STREAM: the receiver sends nothing back. */
export const FLAG_UNIDIRECTIONAL = 0x02;

/** RST_STREAM status codes. */
export enum RstStatus {
  ProtocolError = 1,
  InvalidStream = 2,
  RefusedStream = 3,
  UnsupportedVersion = 4,
  Cancel = 5,
  InternalError = 6,
  FlowControlError = 7,
  StreamInUse = 8,
  StreamAlreadyClosed = 9,
}

/** A frame; `headerBlock` is the compressed name/value block. */
export type Frame =
  | { type: "data"; streamId: number; flags: number; data: Uint8Array }
  | {
    type: "syn_stream";
    streamId: number;
    associatedId: number;
    priority: number;
    flags: number;
    headerBlock: Uint8Array;
  }
  | { type: "syn_reply"; streamId: number; flags: number; headerBlock: Uint8Array }
  | { type: "rst_stream"; streamId: number; status: number }
  | { type: "settings"; flags: number; entries: { flags: number; id: number; value: number }[] }
  | { type: "ping"; id: number }
  | { type: "goaway"; lastGoodStreamId: number; status: number }
  | { type: "headers"; streamId: number; flags: number; headerBlock: Uint8Array }
  | { type: "window_update"; streamId: number; delta: number }
  | { type: "unknown"; frameType: number; flags: number; payload: Uint8Array };

/** The largest payload a frame's 24-bit length can carry. */
export const MAX_FRAME_PAYLOAD = 0xffffff;

const STREAM_ID_MASK = 0x7fffffff;

function protocolError(msg: string): BerthError {
  return new BerthError(Code.InvalidArgument, `spdy: ${msg}`);
}

function control(type: FrameType, flags: number, payload: Uint8Array): Uint8Array {
  if (payload.length > MAX_FRAME_PAYLOAD) throw protocolError("frame too large");
  const out = new Uint8Array(8 + payload.length);
  const v = new DataView(out.buffer);
  v.setUint16(0, 0x8000 | SPDY_VERSION);
  v.setUint16(2, type);
  v.setUint32(4, (flags << 24) | payload.length);
  out.set(payload, 8);
  return out;
}

function words(...values: number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const v = new DataView(out.buffer);
  values.forEach((x, i) => v.setUint32(i * 4, x >>> 0));
  return out;
}

/** Encodes one frame to its wire bytes. */
export function encodeFrame(f: Frame): Uint8Array {
  switch (f.type) {
    case "data": {
      if (f.data.length > MAX_FRAME_PAYLOAD) throw protocolError("frame too large");
      const out = new Uint8Array(8 + f.data.length);
      const v = new DataView(out.buffer);
      v.setUint32(0, f.streamId & STREAM_ID_MASK);
      v.setUint32(4, (f.flags << 24) | f.data.length);
      out.set(f.data, 8);
      return out;
    }
    case "syn_stream": {
      const head = new Uint8Array(10);
      const v = new DataView(head.buffer);
      v.setUint32(0, f.streamId & STREAM_ID_MASK);
      v.setUint32(4, f.associatedId & STREAM_ID_MASK);
      head[8] = (f.priority & 7) << 5;
      return control(FrameType.SynStream, f.flags, concatBytes(head, f.headerBlock));
    }
    case "syn_reply":
      return control(
        FrameType.SynReply,
        f.flags,
        concatBytes(words(f.streamId & STREAM_ID_MASK), f.headerBlock),
      );
    case "headers":
      return control(
        FrameType.Headers,
        f.flags,
        concatBytes(words(f.streamId & STREAM_ID_MASK), f.headerBlock),
      );
    case "rst_stream":
      return control(FrameType.RstStream, 0, words(f.streamId & STREAM_ID_MASK, f.status));
    case "settings": {
      const body = words(f.entries.length, ...f.entries.flatMap((e) => [0, e.value]));
      const v = new DataView(body.buffer);
      f.entries.forEach((e, i) =>
        v.setUint32(4 + i * 8, ((e.flags << 24) | (e.id & 0xffffff)) >>> 0)
      );
      return control(FrameType.Settings, f.flags, body);
    }
    case "ping":
      return control(FrameType.Ping, 0, words(f.id));
    case "goaway":
      return control(FrameType.GoAway, 0, words(f.lastGoodStreamId & STREAM_ID_MASK, f.status));
    case "window_update":
      return control(
        FrameType.WindowUpdate,
        0,
        words(f.streamId & STREAM_ID_MASK, f.delta & STREAM_ID_MASK),
      );
    case "unknown":
      return control(f.frameType, f.flags, f.payload);
  }
}

function needLength(payload: Uint8Array, n: number, what: string): DataView {
  if (payload.length < n) throw protocolError(`${what} frame too short (${payload.length} bytes)`);
  return new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
}

function decodeControl(type: number, flags: number, p: Uint8Array): Frame {
  switch (type) {
    case FrameType.SynStream: {
      const v = needLength(p, 10, "SYN_STREAM");
      return {
        type: "syn_stream",
        streamId: v.getUint32(0) & STREAM_ID_MASK,
        associatedId: v.getUint32(4) & STREAM_ID_MASK,
        priority: p[8] >> 5,
        flags,
        headerBlock: p.subarray(10),
      };
    }
    case FrameType.SynReply:
    case FrameType.Headers: {
      const v = needLength(p, 4, type === FrameType.SynReply ? "SYN_REPLY" : "HEADERS");
      return {
        type: type === FrameType.SynReply ? "syn_reply" : "headers",
        streamId: v.getUint32(0) & STREAM_ID_MASK,
        flags,
        headerBlock: p.subarray(4),
      };
    }
    case FrameType.RstStream: {
      const v = needLength(p, 8, "RST_STREAM");
      return {
        type: "rst_stream",
        streamId: v.getUint32(0) & STREAM_ID_MASK,
        status: v.getUint32(4),
      };
    }
    case FrameType.Settings: {
      const v = needLength(p, 4, "SETTINGS");
      const n = v.getUint32(0);
      if (p.length !== 4 + n * 8) {
        throw protocolError(`SETTINGS length ${p.length} for ${n} entries`);
      }
      const entries = [];
      for (let i = 0; i < n; i++) {
        const word = v.getUint32(4 + i * 8);
        entries.push({ flags: word >>> 24, id: word & 0xffffff, value: v.getUint32(8 + i * 8) });
      }
      return { type: "settings", flags, entries };
    }
    case FrameType.Ping:
      return { type: "ping", id: needLength(p, 4, "PING").getUint32(0) };
    case FrameType.GoAway: {
      const v = needLength(p, 4, "GOAWAY");
      // SPDY/3 added the status word; accept its absence as OK.
      return {
        type: "goaway",
        lastGoodStreamId: v.getUint32(0) & STREAM_ID_MASK,
        status: p.length >= 8 ? v.getUint32(4) : 0,
      };
    }
    case FrameType.WindowUpdate: {
      const v = needLength(p, 8, "WINDOW_UPDATE");
      return {
        type: "window_update",
        streamId: v.getUint32(0) & STREAM_ID_MASK,
        delta: v.getUint32(4) & STREAM_ID_MASK,
      };
    }
    default:
      return { type: "unknown", frameType: type, flags, payload: p };
  }
}

/**
 * Splits a byte stream into frames: {@link push} bytes as they arrive and
 * take whole frames from {@link next} until it returns undefined.
 */
export class FrameDecoder {
  #buf: Uint8Array = new Uint8Array(0);
  #maxPayload: number;

  /** `maxPayload` bounds a frame's length before its bytes are buffered. */
  constructor(maxPayload = MAX_FRAME_PAYLOAD) {
    this.#maxPayload = maxPayload;
  }

  /** Appends received bytes. */
  push(bytes: Uint8Array): void {
    this.#buf = this.#buf.length === 0 ? bytes.slice() : concatBytes(this.#buf, bytes);
  }

  /** Bytes received but not yet part of a whole frame. */
  get pending(): number {
    return this.#buf.length;
  }

  /** The next whole frame, or undefined until more bytes arrive. */
  next(): Frame | undefined {
    if (this.#buf.length < 8) return undefined;
    const v = new DataView(this.#buf.buffer, this.#buf.byteOffset, this.#buf.byteLength);
    const w1 = v.getUint32(4);
    const length = w1 & 0xffffff;
    const flags = w1 >>> 24;
    if (length > this.#maxPayload) throw protocolError(`frame of ${length} bytes is too large`);
    if (this.#buf.length < 8 + length) return undefined;
    const payload = this.#buf.slice(8, 8 + length);
    const first = v.getUint32(0);
    this.#buf = this.#buf.subarray(8 + length);
    if ((first & 0x80000000) === 0) {
      return { type: "data", streamId: first & STREAM_ID_MASK, flags, data: payload };
    }
    const version = (first >>> 16) & 0x7fff;
    if (version !== SPDY_VERSION) throw protocolError(`unsupported version ${version}`);
    return decodeControl(first & 0xffff, flags, payload);
  }
}
