/**
 * HTTP/2 (RFC 9113) frame-level constants and the frame writer. A frame is
 * a 9-byte header (24-bit length, type, flags, 31-bit stream id) and its
 * payload.
 *
 * @module
 */

import { putUint32 } from "../../bytes/mod.ts";
import { BatchWriter, type ByteSink } from "../../rpc/mod.ts";

/** Bytes of a frame header. */
export const FRAME_HEADER = 9;

/** The client connection preface, before its first SETTINGS frame. */
export const PREFACE: Uint8Array = new TextEncoder().encode("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** Frame types. */
export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  PRIORITY: 0x2,
  RST_STREAM: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  PING: 0x6,
  GOAWAY: 0x7,
  WINDOW_UPDATE: 0x8,
  CONTINUATION: 0x9,
} as const;

/** Frame flags (their meaning depends on the type). */
export const Flags = {
  END_STREAM: 0x1,
  ACK: 0x1,
  END_HEADERS: 0x4,
  PADDED: 0x8,
  PRIORITY: 0x20,
} as const;

/** Error codes of RST_STREAM and GOAWAY. */
export const ErrorCode = {
  NO_ERROR: 0x0,
  PROTOCOL_ERROR: 0x1,
  INTERNAL_ERROR: 0x2,
  FLOW_CONTROL_ERROR: 0x3,
  SETTINGS_TIMEOUT: 0x4,
  STREAM_CLOSED: 0x5,
  FRAME_SIZE_ERROR: 0x6,
  REFUSED_STREAM: 0x7,
  CANCEL: 0x8,
  COMPRESSION_ERROR: 0x9,
  CONNECT_ERROR: 0xa,
  ENHANCE_YOUR_CALM: 0xb,
  INADEQUATE_SECURITY: 0xc,
  HTTP_1_1_REQUIRED: 0xd,
} as const;

/** SETTINGS identifiers. */
export const Setting = {
  HEADER_TABLE_SIZE: 0x1,
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
} as const;

/** Largest flow-control window (2^31 - 1). */
export const MAX_WINDOW = 0x7fffffff;
/** Window and frame size every connection starts with. */
export const DEFAULT_WINDOW = 65535;
/** Smallest (and default) SETTINGS_MAX_FRAME_SIZE. */
export const DEFAULT_MAX_FRAME = 16384;

/**
 * A protocol violation by the peer: a connection error (GOAWAY, then close)
 * when `streamId` is 0, else a stream error (RST_STREAM on that stream).
 */
export class H2Error extends Error {
  /** `code` is an {@link ErrorCode}. */
  constructor(readonly code: number, message: string, readonly streamId = 0) {
    super(`http2: ${message}`);
    this.name = "H2Error";
  }
}

/**
 * Queues HTTP/2 frames on a {@link BatchWriter}: everything queued in one
 * tick goes out with one write.
 */
export class H2Writer {
  #w: BatchWriter;

  /** `onError` is called once, with the first write error; later frames are dropped. */
  constructor(sink: ByteSink, onError: (err: unknown) => void) {
    this.#w = new BatchWriter(sink, onError);
  }

  /** Bytes queued and not yet handed to the sink. */
  get pendingBytes(): number {
    return this.#w.pendingBytes;
  }

  /**
   * Appends a frame header for `length` payload bytes; returns the offset in
   * {@link buffer} where the caller writes them, synchronously.
   */
  reserve(streamId: number, type: number, flags: number, length: number): number {
    const at = this.#w.reserve(FRAME_HEADER + length);
    const b = this.#w.buffer;
    b[at] = length >>> 16;
    b[at + 1] = length >>> 8;
    b[at + 2] = length;
    b[at + 3] = type;
    b[at + 4] = flags;
    putUint32(b, at + 5, streamId & 0x7fffffff);
    return at + FRAME_HEADER;
  }

  /** The buffer {@link reserve} offsets point into (valid until the next reserve). */
  get buffer(): Uint8Array {
    return this.#w.buffer;
  }

  /** Queues a frame with `payload` (or the part `from`..`to` of it). */
  frame(
    streamId: number,
    type: number,
    flags: number,
    payload: Uint8Array,
    from = 0,
    to = payload.length,
  ): void {
    const at = this.reserve(streamId, type, flags, to - from);
    this.#w.buffer.set(
      from === 0 && to === payload.length ? payload : payload.subarray(from, to),
      at,
    );
  }

  /** Queues a frame whose payload is one 32-bit value (RST_STREAM, WINDOW_UPDATE). */
  frame32(streamId: number, type: number, flags: number, value: number): void {
    const at = this.reserve(streamId, type, flags, 4);
    const b = this.#w.buffer;
    putUint32(b, at, value);
  }

  /** Drops whatever is queued and everything later (the connection is gone). */
  close(): void {
    this.#w.close();
  }

  /** Resolves once everything queued so far is written (or writing stopped). */
  drained(): Promise<void> {
    return this.#w.drained();
  }
}
