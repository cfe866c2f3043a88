/**
 * ttrpc framing, and nothing else: a 10-byte header (payload length u32 BE,
 * stream id u32 BE, message type u8, flags u8) followed by the payload. This
 * file knows nothing of requests, services or sockets beyond "something that
 * reads bytes" and "something that writes bytes".
 *
 * @example
 * ```ts
 * const w = new FrameWriter(conn);
 * w.frame(1, MessageType.Request, 0, bytes); // sent with others queued this tick
 * await readFrames(conn, { frame(id, type, flags, payload) {}, oversized() {} });
 * ```
 * @module
 */

import { putUint32 } from "../bytes/mod.ts";
import { BatchWriter, type ByteSink } from "../rpc/mod.ts";

/** Size of the fixed frame header. */
export const HEADER_LENGTH = 10;

/** Largest payload ttrpc accepts (4 MiB), on both sides. */
export const MAX_MESSAGE_LENGTH = 4 << 20;

/** The frame types of ttrpc 1.2. */
export const MessageType = {
  /** Opens a stream: carries the request envelope. */
  Request: 0x1,
  /** Ends a stream: carries the response envelope (status + payload). */
  Response: 0x2,
  /** A message on an open stream, either direction. */
  Data: 0x3,
} as const;

/** Frame flags; their meaning depends on the message type. */
export const Flag = {
  /** The sender will send nothing more on this stream. */
  RemoteClosed: 0x1,
  /** Request only: the sender will still send data frames. */
  RemoteOpen: 0x2,
  /** Data only: the frame carries no message (e.g. a bare close). */
  NoData: 0x4,
} as const;

/** Something frames can be read from; a Deno.Conn fits. */
export interface ByteSource {
  /** Reads into `p`; null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
}

/** What {@link readFrames} hands each frame to. */
export interface FrameHandler {
  /**
   * One complete frame. `payload` is the handler's to keep (a copy, not a
   * view of the read buffer). Returning a promise pauses reading until it
   * settles, which is how a full stream queue pushes back on the peer.
   */
  frame(streamId: number, type: number, flags: number, payload: Uint8Array): void | Promise<void>;
  /**
   * A frame whose declared length was over the limit. Its payload has already
   * been read and dropped, so the connection stays in step and usable.
   */
  oversized(streamId: number, type: number, flags: number, length: number): void | Promise<void>;
}

/** The byte stream ended or broke in the middle of a frame. */
export class FramingError extends Error {
  /** Makes a framing error with a message saying what was cut short. */
  constructor(message: string) {
    super(message);
    this.name = "FramingError";
  }
}

const EMPTY = new Uint8Array(0);
const READ_BUFFER = 64 << 10;

/**
 * Reads frames from `src` until it ends, calling `handler` for each. Resolves
 * at a clean end of stream (between frames); rejects with a
 * {@link FramingError} when the stream ends inside a frame, or with the
 * source's own error. One buffer is reused for all reads; it grows only as
 * far as the largest frame seen and shrinks back once drained.
 */
export async function readFrames(
  src: ByteSource,
  handler: FrameHandler,
  maxLength = MAX_MESSAGE_LENGTH,
): Promise<void> {
  let buf = new Uint8Array(READ_BUFFER);
  let start = 0;
  let end = 0;
  // Bytes of an oversized payload still to be skipped, and its header.
  let skip = 0;
  let skipId = 0, skipType = 0, skipFlags = 0, skipLength = 0;

  for (;;) {
    // Handle every complete frame already buffered.
    while (true) {
      if (skip > 0) {
        const n = Math.min(skip, end - start);
        start += n;
        skip -= n;
        if (skip > 0) break;
        const r = handler.oversized(skipId, skipType, skipFlags, skipLength);
        if (r) await r;
        continue;
      }
      const avail = end - start;
      if (avail < HEADER_LENGTH) break;
      const length = ((buf[start] << 24) | (buf[start + 1] << 16) | (buf[start + 2] << 8) |
        buf[start + 3]) >>> 0;
      const streamId = ((buf[start + 4] << 24) | (buf[start + 5] << 16) | (buf[start + 6] << 8) |
        buf[start + 7]) >>> 0;
      const type = buf[start + 8];
      const flags = buf[start + 9];
      if (length > maxLength) {
        start += HEADER_LENGTH;
        skip = length;
        skipId = streamId, skipType = type, skipFlags = flags, skipLength = length;
        continue;
      }
      const total = HEADER_LENGTH + length;
      if (avail < total) {
        // Make room for the rest of this frame: slide it to the front, or
        // grow when the buffer is smaller than the frame itself.
        if (total > buf.length) {
          const bigger = new Uint8Array(total);
          bigger.set(buf.subarray(start, end));
          buf = bigger;
          end = avail;
          start = 0;
        } else if (start + total > buf.length) {
          buf.copyWithin(0, start, end);
          end = avail;
          start = 0;
        }
        break;
      }
      const from = start + HEADER_LENGTH;
      start += total;
      const payload = length === 0 ? EMPTY : buf.slice(from, from + length);
      const r = handler.frame(streamId, type, flags, payload);
      if (r) await r;
    }

    if (start === end) {
      start = end = 0;
      if (buf.length > READ_BUFFER) buf = new Uint8Array(READ_BUFFER);
    } else if (end === buf.length) {
      // Only a partial header (or skipped bytes) sits at the very end.
      buf.copyWithin(0, start, end);
      end -= start;
      start = 0;
    }

    const n = await src.read(buf.subarray(end));
    if (n === null) {
      if (skip > 0) {
        throw new FramingError(
          `ttrpc: connection ended while discarding an oversized message (${skipLength} bytes)`,
        );
      }
      if (end > start) {
        throw new FramingError(
          end - start < HEADER_LENGTH
            ? `ttrpc: connection ended inside a frame header (${
              end - start
            } of ${HEADER_LENGTH} bytes)`
            : "ttrpc: connection ended inside a frame payload",
        );
      }
      return;
    }
    end += n;
  }
}

/** Writes a frame header into `buf` at `at`. */
export function putHeader(
  buf: Uint8Array,
  at: number,
  length: number,
  streamId: number,
  type: number,
  flags: number,
): void {
  putUint32(buf, at, length);
  putUint32(buf, at + 4, streamId);
  buf[at + 8] = type;
  buf[at + 9] = flags;
}

/**
 * Queues ttrpc frames on a {@link BatchWriter}. Callers that encode their
 * own payload use {@link FrameWriter.reserve} and fill
 * {@link FrameWriter.buffer} directly, which saves a copy on the hot path.
 */
export class FrameWriter {
  #w: BatchWriter;

  /** See {@link BatchWriter}'s constructor. */
  constructor(sink: ByteSink, onError: (err: unknown) => void = () => {}) {
    this.#w = new BatchWriter(sink, onError);
  }

  /** The buffer that {@link reserve} offsets point into (valid until the next reserve). */
  get buffer(): Uint8Array {
    return this.#w.buffer;
  }

  /** Bytes queued and not yet handed to the sink. */
  get pendingBytes(): number {
    return this.#w.pendingBytes;
  }

  /** Why writing stopped (a write error, or close), if it did. */
  get error(): unknown {
    return this.#w.error;
  }

  /**
   * Appends a header for a frame of `length` payload bytes and returns the
   * offset in {@link buffer} where the caller must write exactly `length`
   * bytes, synchronously, before anything else touches the writer.
   */
  reserve(streamId: number, type: number, flags: number, length: number): number {
    if (length > MAX_MESSAGE_LENGTH) {
      throw new RangeError(
        `ttrpc: message of ${length} bytes exceeds the limit of ${MAX_MESSAGE_LENGTH} bytes`,
      );
    }
    const at = this.#w.reserve(HEADER_LENGTH + length);
    putHeader(this.#w.buffer, at, length, streamId, type, flags);
    return at + HEADER_LENGTH;
  }

  /** Queues one frame carrying `payload`. */
  frame(streamId: number, type: number, flags: number, payload: Uint8Array): void {
    const at = this.reserve(streamId, type, flags, payload.length);
    this.#w.buffer.set(payload, at);
  }

  /** Stops writing: frames queued or added later are dropped (the connection is gone). */
  close(): void {
    this.#w.close();
  }

  /** Resolves once everything queued so far has been written (or writing failed). */
  drained(): Promise<void> {
    return this.#w.drained();
  }
}
