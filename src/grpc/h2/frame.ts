/**
 * HTTP/2 (RFC 9113) frame-level constants and the frame writer. A frame is
 * a 9-byte header (24-bit length, type, flags, 31-bit stream id) and its
 * payload.
 *
 * @module
 */

import type { ByteSink } from "../../ttrpc/channel.ts";

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

const WRITE_BUFFER = 64 << 10;

/**
 * Queues frames and writes everything queued in one tick with one write
 * (many small answers cost one system call). While a write is in progress
 * new frames gather in a second buffer for the next one.
 */
export class H2Writer {
  #sink: ByteSink;
  #buf = new Uint8Array(WRITE_BUFFER);
  #spare = new Uint8Array(WRITE_BUFFER);
  #len = 0;
  #scheduled = false;
  #writing = false;
  #closed = false;
  #drainWaiters: Array<() => void> = [];
  #onError: (err: unknown) => void;
  #flushFn = () => this.#flush();

  /** `onError` is called once, with the first write error; later frames are dropped. */
  constructor(sink: ByteSink, onError: (err: unknown) => void) {
    this.#sink = sink;
    this.#onError = onError;
  }

  /** Bytes queued and not yet handed to the sink. */
  get pendingBytes(): number {
    return this.#len;
  }

  /**
   * Appends a frame header for `length` payload bytes; returns the offset in
   * {@link buffer} where the caller writes them, synchronously.
   */
  reserve(type: number, flags: number, streamId: number, length: number): number {
    if (this.#closed) this.#len = 0;
    const need = this.#len + FRAME_HEADER + length;
    if (need > this.#buf.length) {
      let size = this.#buf.length * 2;
      while (size < need) size *= 2;
      const bigger = new Uint8Array(size);
      bigger.set(this.#buf.subarray(0, this.#len));
      this.#buf = bigger;
    }
    const b = this.#buf;
    const at = this.#len;
    b[at] = length >>> 16;
    b[at + 1] = length >>> 8;
    b[at + 2] = length;
    b[at + 3] = type;
    b[at + 4] = flags;
    b[at + 5] = (streamId >>> 24) & 0x7f;
    b[at + 6] = streamId >>> 16;
    b[at + 7] = streamId >>> 8;
    b[at + 8] = streamId;
    this.#len = need;
    if (!this.#scheduled && !this.#writing && !this.#closed) {
      this.#scheduled = true;
      queueMicrotask(this.#flushFn);
    }
    return at + FRAME_HEADER;
  }

  /** The buffer {@link reserve} offsets point into (valid until the next reserve). */
  get buffer(): Uint8Array {
    return this.#buf;
  }

  /** Queues a frame with `payload` (or the part `from`..`to` of it). */
  frame(
    type: number,
    flags: number,
    streamId: number,
    payload: Uint8Array,
    from = 0,
    to = payload.length,
  ): void {
    const at = this.reserve(type, flags, streamId, to - from);
    this.#buf.set(from === 0 && to === payload.length ? payload : payload.subarray(from, to), at);
  }

  /** Queues a frame whose payload is one 32-bit value (RST_STREAM, WINDOW_UPDATE). */
  frame32(type: number, flags: number, streamId: number, value: number): void {
    const at = this.reserve(type, flags, streamId, 4);
    const b = this.#buf;
    b[at] = value >>> 24;
    b[at + 1] = value >>> 16;
    b[at + 2] = value >>> 8;
    b[at + 3] = value;
  }

  /** Drops whatever is queued and everything later (the connection is gone). */
  close(): void {
    this.#closed = true;
    this.#len = 0;
    this.#wake();
  }

  /** Resolves once everything queued so far is written (or writing stopped). */
  drained(): Promise<void> {
    if ((this.#len === 0 && !this.#writing) || this.#closed) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#len > 0 && !this.#closed) {
        const out = this.#buf;
        const len = this.#len;
        this.#buf = this.#spare.length >= WRITE_BUFFER ? this.#spare : new Uint8Array(WRITE_BUFFER);
        this.#len = 0;
        let off = 0;
        while (off < len) off += await this.#sink.write(out.subarray(off, len));
        // Keep a grown buffer only while traffic needs it.
        this.#spare = out.length > 4 * WRITE_BUFFER ? new Uint8Array(WRITE_BUFFER) : out;
      }
    } catch (err) {
      if (!this.#closed) {
        this.#closed = true;
        this.#len = 0;
        this.#onError(err);
      }
    } finally {
      this.#writing = false;
      this.#wake();
    }
  }

  #wake(): void {
    const waiters = this.#drainWaiters;
    if (waiters.length === 0) return;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }
}
