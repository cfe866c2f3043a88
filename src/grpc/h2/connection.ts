/**
 * The server side of one HTTP/2 connection (RFC 9113, cleartext with prior
 * knowledge, as gRPC over a unix socket uses it): preface and SETTINGS
 * (whose ACK must come in time), PING, HEADERS/CONTINUATION with HPACK, DATA
 * with flow control both ways, RST_STREAM, GOAWAY either way (ours in two
 * steps on a graceful end, so that streams in flight are not refused). What
 * a stream carries is the
 * {@link H2Handler}'s business; a misbehaving peer costs its own stream or
 * its own connection, never the process.
 *
 * @module
 */

import { putUint32 } from "../../bytes/mod.ts";
import { log } from "../../log/mod.ts";
import {
  DEFAULT_MAX_FRAME,
  DEFAULT_WINDOW,
  ErrorCode,
  Flags,
  FRAME_HEADER,
  FrameType,
  H2Error,
  H2Writer,
  MAX_WINDOW,
  PREFACE,
  Setting,
} from "./frame.ts";
import { HeaderListTooLarge, HpackDecoder, HpackError } from "./hpack.ts";

/** What a connection hands its streams to. */
export interface H2Handler {
  /** A new request: its header fields as a flat [name, value, ...] list (validated). */
  request(s: H2Stream, headers: string[], endStream: boolean): void;
  /**
   * Request body bytes (`chunk` may be empty when only the end arrives). A
   * returned promise holds the stream's flow-control credit until it
   * settles: the peer stops once its window is spent.
   */
  data(s: H2Stream, chunk: Uint8Array, endStream: boolean): Promise<void> | void;
  /** The stream is over: both sides ended, or it was reset, or the connection closed. */
  closed(s: H2Stream): void;
}

/** Options of {@link H2Connection}. */
export interface H2Options {
  /** SETTINGS_MAX_CONCURRENT_STREAMS we advertise (default 1000). */
  maxConcurrentStreams?: number;
  /** SETTINGS_INITIAL_WINDOW_SIZE we advertise: what a stream may send unread (default 1 MiB). */
  streamWindow?: number;
  /** The connection's receive window (default 16 MiB). */
  connectionWindow?: number;
  /** Largest header block accepted, compressed or not (default 1 MiB). */
  maxHeaderListSize?: number;
  /** How long the peer has to acknowledge our SETTINGS before SETTINGS_TIMEOUT (default 10 s). */
  settingsTimeoutMs?: number;
  /**
   * On a graceful end, how long to wait for the PING that follows the first
   * GOAWAY before the final one is sent anyway (default 1 s).
   */
  drainPingMs?: number;
}

const EMPTY = new Uint8Array(0);
const READ_BUFFER = 64 << 10;
// Outbound bytes queued on a stream before its writer waits.
const STREAM_HIGH_WATER = 1 << 20;
// Outbound bytes queued on the connection before its peer's input is paused
// (a peer that sends without reading must not grow our buffers without end).
const WRITE_HIGH_WATER = 16 << 20;
// Streams we reset whose late frames are ignored (RFC 9113 5.1); the oldest
// are forgotten past this many (a later frame on one then gets a
// STREAM_CLOSED reset, which costs the peer nothing).
const RESET_MEMORY = 256;
// The last stream id of the first GOAWAY of a graceful end: every stream
// the peer may have opened is still taken (RFC 9113 6.8).
const ALL_STREAMS = 0x7fffffff;
// The opaque data of the PING that follows it.
const DRAIN_PING = new Uint8Array([0x62, 0x65, 0x72, 0x74, 0x68, 0x2d, 0x67, 0x61]);
const CONNECTION_SPECIFIC = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "transfer-encoding",
  "upgrade",
]);

/** One request stream; `user` is the handler's (the gRPC call). */
export class H2Stream {
  /** The handler's state for this stream. */
  user: unknown = undefined;
  /** The peer sent END_STREAM. */
  remoteClosed = false;
  /** We sent END_STREAM (or are about to, after the queued data). */
  localClosed = false;
  /** The stream is gone (closed or reset); writes are dropped. */
  gone = false;
  /** The peer's RST_STREAM code, when it reset the stream. */
  resetCode: number | undefined = undefined;
  /** What we may still send (the peer's window for this stream). */
  sendWindow: number;
  /** What the peer may still send us. */
  recvWindow: number;
  credit = 0;
  held = 0;
  paused = false;
  // Data waiting for window, the offset into its first chunk, and the total.
  queue: Uint8Array[] = [];
  queueOff = 0;
  queued = 0;
  // What ends the stream once the queue is sent: a trailer block, or an empty END_STREAM DATA.
  ending: Uint8Array | null | undefined = undefined;
  waiters: Array<() => void> = [];

  constructor(readonly id: number, readonly conn: H2Connection, sendWindow: number, recv: number) {
    this.sendWindow = sendWindow;
    this.recvWindow = recv;
  }
}

/** One accepted HTTP/2 connection, server side. */
export class H2Connection {
  #conn: Deno.Conn;
  #handler: H2Handler;
  #writer: H2Writer;
  #decoder: HpackDecoder;
  #streams = new Map<number, H2Stream>();
  // The last stream taken (what a final GOAWAY names), and the highest the
  // peer opened, taken or not (streams above it are idle).
  #lastId = 0;
  #maxSeen = 0;
  // Closed streams whose late frames are ignored: those we reset.
  #resetIds = new Set<number>();
  #closed = false;
  // The first GOAWAY of a graceful end went out; the final one not yet.
  #draining = false;
  #goawaySent = false;
  #peerGoaway = false;
  #settingsTimeout: number;
  #drainPingMs: number;
  #settingsTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #drainTimer: ReturnType<typeof setTimeout> | undefined = undefined;
  #onClose: (c: H2Connection) => void;
  // Our settings.
  #maxStreams: number;
  #streamWindow: number;
  #connWindow: number;
  #maxHeaderList: number;
  // The peer's settings and windows.
  #peerInitialWindow = DEFAULT_WINDOW;
  #peerMaxFrame = DEFAULT_MAX_FRAME;
  #sendWindow = DEFAULT_WINDOW;
  #sizeUpdate = false;
  #recvWindow: number;
  #connCredit = 0;
  // Streams with data waiting for the connection window, in order.
  #blocked = new Set<H2Stream>();
  // A header block in progress (HEADERS without END_HEADERS, then CONTINUATION).
  #contId = 0;
  #contFlags = 0;
  #contParts: Uint8Array[] = [];
  #contLength = 0;

  constructor(
    conn: Deno.Conn,
    handler: H2Handler,
    opts: H2Options,
    onClose: (c: H2Connection) => void,
  ) {
    this.#conn = conn;
    this.#handler = handler;
    this.#onClose = onClose;
    this.#maxStreams = opts.maxConcurrentStreams ?? 1000;
    this.#streamWindow = opts.streamWindow ?? 1 << 20;
    this.#connWindow = opts.connectionWindow ?? 16 << 20;
    this.#maxHeaderList = opts.maxHeaderListSize ?? 1 << 20;
    this.#settingsTimeout = opts.settingsTimeoutMs ?? 10_000;
    this.#drainPingMs = opts.drainPingMs ?? 1000;
    this.#recvWindow = this.#connWindow;
    this.#decoder = new HpackDecoder(4096);
    this.#writer = new H2Writer(conn, (err) => {
      if (!this.#closed) log.debug("http2: write failed; closing", { error: String(err) });
      this.close();
    });
  }

  /** Streams open now. */
  get streams(): number {
    return this.#streams.size;
  }

  /** Serves the connection until it ends; never rejects. */
  async run(): Promise<void> {
    // The server preface: our SETTINGS, then the connection window beyond the default.
    const settings: Array<[number, number]> = [
      [Setting.MAX_CONCURRENT_STREAMS, this.#maxStreams],
      [Setting.INITIAL_WINDOW_SIZE, this.#streamWindow],
      [Setting.MAX_HEADER_LIST_SIZE, this.#maxHeaderList],
    ];
    const at = this.#writer.reserve(0, FrameType.SETTINGS, 0, 6 * settings.length);
    const b = this.#writer.buffer;
    settings.forEach(([id, v], i) => {
      const o = at + 6 * i;
      b[o] = id >>> 8;
      b[o + 1] = id;
      putUint32(b, o + 2, v);
    });
    if (this.#connWindow > DEFAULT_WINDOW) {
      this.#writer.frame32(0, FrameType.WINDOW_UPDATE, 0, this.#connWindow - DEFAULT_WINDOW);
    }
    // A peer that never acknowledges our SETTINGS is not speaking HTTP/2
    // (RFC 9113 6.5.3); unref'd, so that it keeps no process alive.
    const settingsTimer = setTimeout(() => {
      this.#settingsTimer = undefined;
      this.#abort(new H2Error(ErrorCode.SETTINGS_TIMEOUT, "SETTINGS not acknowledged"));
    }, this.#settingsTimeout);
    Deno.unrefTimer(settingsTimer);
    this.#settingsTimer = settingsTimer;
    try {
      await this.#read();
    } catch (err) {
      if (err instanceof H2Error) this.#fail(err);
      else if (!this.#closed && !isGoneError(err)) {
        log.debug("http2: dropping connection", { error: String(err) });
      }
    } finally {
      if (this.#goawaySent && !this.#closed) {
        // Let the GOAWAY out before the socket closes.
        await this.#writer.drained();
      }
      this.close();
    }
  }

  /**
   * Graceful end (server shutdown), in two steps (RFC 9113 6.8): a GOAWAY
   * naming stream 2^31-1 and a PING; once the PING comes back (or after a
   * bound), every stream the peer sent before seeing the GOAWAY has
   * arrived, and the final GOAWAY names the last one taken. Then no new
   * streams, and the connection closes once its streams are done.
   */
  goaway(): void {
    if (this.#closed || this.#goawaySent || this.#draining) return;
    this.#draining = true;
    this.#sendGoaway(ErrorCode.NO_ERROR, "", ALL_STREAMS);
    this.#writer.frame(0, FrameType.PING, 0, DRAIN_PING);
    const drainTimer = setTimeout(() => {
      this.#drainTimer = undefined;
      this.#finalGoaway();
    }, this.#drainPingMs);
    Deno.unrefTimer(drainTimer);
    this.#drainTimer = drainTimer;
  }

  #finalGoaway(): void {
    if (this.#drainTimer !== undefined) {
      clearTimeout(this.#drainTimer);
      this.#drainTimer = undefined;
    }
    if (this.#closed || this.#goawaySent) return;
    this.#goawaySent = true;
    this.#sendGoaway(ErrorCode.NO_ERROR, "", this.#lastId);
    this.#maybeIdleClose();
  }

  /** Closes now; open streams are reported closed to the handler. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#settingsTimer !== undefined) clearTimeout(this.#settingsTimer);
    if (this.#drainTimer !== undefined) clearTimeout(this.#drainTimer);
    this.#writer.close();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    const streams = [...this.#streams.values()];
    this.#streams.clear();
    this.#blocked.clear();
    for (const s of streams) this.#gone(s);
    this.#onClose(this);
  }

  // ---- sending (used by the handler) ----

  /** Sends a response header block; with `endStream` it is the whole response (trailers-only). */
  respond(s: H2Stream, block: Uint8Array, endStream: boolean): void {
    if (s.gone || s.localClosed) return;
    if (endStream) s.localClosed = true;
    this.#headers(s.id, block, endStream);
    if (endStream) this.#localDone(s);
  }

  /** Queues body bytes; they go out as the peer's windows allow. */
  write(s: H2Stream, data: Uint8Array): void {
    if (s.gone || s.localClosed || data.length === 0) return;
    s.queue.push(data);
    s.queued += data.length;
    this.#pump(s);
  }

  /** Ends the stream after the queued data: with a trailer block, or (null) an empty DATA frame. */
  end(s: H2Stream, trailers: Uint8Array | null): void {
    if (s.gone || s.localClosed) return;
    s.localClosed = true;
    s.ending = trailers;
    this.#pump(s);
  }

  /** Resets the stream (RST_STREAM with `code`) and forgets it. */
  reset(s: H2Stream, code: number): void {
    if (s.gone) return;
    this.#writer.frame32(s.id, FrameType.RST_STREAM, 0, code);
    this.#remember(s.id);
    this.#drop(s);
  }

  // A stream we reset: the peer may have sent frames on it already, which
  // are ignored when they come (RFC 9113 5.1, "closed").
  #remember(id: number): void {
    this.#resetIds.add(id);
    if (this.#resetIds.size > RESET_MEMORY) {
      this.#resetIds.delete(this.#resetIds.values().next().value!);
    }
  }

  // A frame on a stream that is not open and not idle: ignored when we
  // reset the stream or never took it (above a final GOAWAY's last id).
  #lateFrame(id: number): boolean {
    return id > this.#lastId || this.#resetIds.has(id);
  }

  /** Resolves when the stream may take more data (its queue and the connection's are short), or is gone. */
  async whenWritable(s: H2Stream): Promise<void> {
    for (;;) {
      if (s.gone || this.#closed) return;
      if (s.queued > STREAM_HIGH_WATER) {
        await new Promise<void>((r) => s.waiters.push(r));
      } else if (this.#writer.pendingBytes > STREAM_HIGH_WATER) {
        await this.#writer.drained();
      } else return;
    }
  }

  /** True when {@link whenWritable} would resolve at once. */
  writable(s: H2Stream): boolean {
    return s.queued <= STREAM_HIGH_WATER && this.#writer.pendingBytes <= STREAM_HIGH_WATER;
  }

  #headers(id: number, block: Uint8Array, endStream: boolean): void {
    let payload = block;
    if (this.#sizeUpdate) {
      // The peer changed its table size: say ours is 0 (we never index).
      this.#sizeUpdate = false;
      payload = new Uint8Array(block.length + 1);
      payload[0] = 0x20;
      payload.set(block, 1);
    }
    const max = this.#peerMaxFrame;
    const end = endStream ? Flags.END_STREAM : 0;
    if (payload.length <= max) {
      this.#writer.frame(id, FrameType.HEADERS, end | Flags.END_HEADERS, payload);
      return;
    }
    this.#writer.frame(id, FrameType.HEADERS, end, payload, 0, max);
    for (let off = max; off < payload.length; off += max) {
      const to = Math.min(payload.length, off + max);
      const flags = to === payload.length ? Flags.END_HEADERS : 0;
      this.#writer.frame(id, FrameType.CONTINUATION, flags, payload, off, to);
    }
  }

  // Sends what the windows allow of the stream's queue, then its end.
  #pump(s: H2Stream): void {
    if (s.gone) return;
    while (s.queued > 0) {
      const room = Math.min(s.sendWindow, this.#sendWindow, this.#peerMaxFrame);
      if (room <= 0) {
        if (this.#sendWindow <= 0 && s.sendWindow > 0) this.#blocked.add(s);
        return;
      }
      const chunk = s.queue[0];
      const n = Math.min(room, chunk.length - s.queueOff);
      this.#writer.frame(s.id, FrameType.DATA, 0, chunk, s.queueOff, s.queueOff + n);
      s.sendWindow -= n;
      this.#sendWindow -= n;
      s.queued -= n;
      s.queueOff += n;
      if (s.queueOff === chunk.length) {
        s.queue.shift();
        s.queueOff = 0;
      }
    }
    if (s.waiters.length > 0) wake(s);
    if (s.ending !== undefined) {
      const ending = s.ending;
      s.ending = undefined;
      if (ending === null) this.#writer.reserve(s.id, FrameType.DATA, Flags.END_STREAM, 0);
      else this.#headers(s.id, ending, true);
      this.#localDone(s);
    }
  }

  // We sent END_STREAM: the stream is over if the peer's side is too; if the
  // peer still sends, it is told to stop (RFC 9113 8.1: NO_ERROR reset
  // after a complete response).
  #localDone(s: H2Stream): void {
    if (s.remoteClosed) this.#drop(s);
    else this.reset(s, ErrorCode.NO_ERROR);
  }

  #drop(s: H2Stream): void {
    if (s.gone) return;
    this.#streams.delete(s.id);
    this.#blocked.delete(s);
    this.#gone(s);
    this.#maybeIdleClose();
  }

  #gone(s: H2Stream): void {
    s.gone = true;
    s.queue = [];
    s.queued = 0;
    wake(s);
    try {
      this.#handler.closed(s);
    } catch (err) {
      log.warn("http2: stream close handler failed", { error: String(err) });
    }
  }

  #maybeIdleClose(): void {
    if (this.#closed || this.#streams.size > 0 || !(this.#goawaySent || this.#peerGoaway)) return;
    this.#writer.drained().then(() => {
      if (this.#streams.size === 0) this.close();
    });
  }

  #sendGoaway(code: number, debug: string, last: number): void {
    const msg = new TextEncoder().encode(debug);
    const at = this.#writer.reserve(0, FrameType.GOAWAY, 0, 8 + msg.length);
    const b = this.#writer.buffer;
    putUint32(b, at, last & 0x7fffffff);
    putUint32(b, at + 4, code);
    b.set(msg, at + 8);
  }

  // A connection error: GOAWAY with the code, and the read loop ends.
  #fail(err: H2Error): void {
    if (this.#closed) return;
    log.debug("http2: connection error", { error: err.message });
    if (!this.#goawaySent || err.code !== ErrorCode.NO_ERROR) {
      this.#goawaySent = true;
      this.#sendGoaway(err.code, err.message, this.#lastId);
    }
  }

  // A connection error found outside the read loop (a timer): GOAWAY, then
  // close once it is written.
  #abort(err: H2Error): void {
    if (this.#closed) return;
    this.#fail(err);
    this.#writer.drained().then(() => this.close());
  }

  // ---- receiving ----

  async #read(): Promise<void> {
    let buf = new Uint8Array(READ_BUFFER);
    let start = 0;
    let end = 0;
    let preface = false;
    let settingsSeen = false;
    for (;;) {
      if (!preface && end - start >= PREFACE.length) {
        for (let i = 0; i < PREFACE.length; i++) {
          if (buf[start + i] !== PREFACE[i]) {
            throw new H2Error(ErrorCode.PROTOCOL_ERROR, "bad connection preface");
          }
        }
        preface = true;
        start += PREFACE.length;
      }
      while (preface && end - start >= FRAME_HEADER) {
        const length = (buf[start] << 16) | (buf[start + 1] << 8) | buf[start + 2];
        if (length > DEFAULT_MAX_FRAME) {
          throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, `frame of ${length} bytes`);
        }
        const total = FRAME_HEADER + length;
        if (end - start < total) {
          if (start + total > buf.length) {
            buf.copyWithin(0, start, end);
            end -= start;
            start = 0;
          }
          break;
        }
        const type = buf[start + 3];
        const flags = buf[start + 4];
        const id = ((buf[start + 5] & 0x7f) << 24 | (buf[start + 6] << 16) |
          (buf[start + 7] << 8) | buf[start + 8]) >>> 0;
        const payload = buf.subarray(start + FRAME_HEADER, start + total);
        start += total;
        if (!settingsSeen) {
          if (type !== FrameType.SETTINGS || (flags & Flags.ACK) !== 0) {
            throw new H2Error(ErrorCode.PROTOCOL_ERROR, "the first frame is not SETTINGS");
          }
          settingsSeen = true;
        }
        this.#frame(type, flags, id, payload);
        if (this.#closed) return;
      }
      if (start === end) start = end = 0;
      else if (end === buf.length) {
        buf.copyWithin(0, start, end);
        end -= start;
        start = 0;
      }
      if (this.#writer.pendingBytes > WRITE_HIGH_WATER) await this.#writer.drained();
      if (this.#closed) return;
      const n = await this.#conn.read(buf.subarray(end));
      if (n === null) return;
      end += n;
      if (buf.length > READ_BUFFER && start === 0 && end === 0) buf = new Uint8Array(READ_BUFFER);
    }
  }

  // One frame; `payload` is a view of the read buffer, valid only during the call.
  #frame(type: number, flags: number, id: number, payload: Uint8Array): void {
    if (this.#contId !== 0 && type !== FrameType.CONTINUATION) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "header block interrupted");
    }
    try {
      switch (type) {
        case FrameType.DATA:
          return this.#data(flags, id, payload);
        case FrameType.HEADERS:
          return this.#headersFrame(flags, id, payload);
        case FrameType.CONTINUATION:
          return this.#continuation(flags, id, payload);
        case FrameType.PRIORITY:
          if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PRIORITY on stream 0");
          if (payload.length !== 5) {
            throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PRIORITY size", id);
          }
          return;
        case FrameType.RST_STREAM:
          return this.#rstStream(id, payload);
        case FrameType.SETTINGS:
          return this.#settings(flags, id, payload);
        case FrameType.PUSH_PROMISE:
          throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PUSH_PROMISE from a client");
        case FrameType.PING:
          if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "PING on a stream");
          if (payload.length !== 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "PING size");
          if ((flags & Flags.ACK) === 0) this.#writer.frame(0, FrameType.PING, Flags.ACK, payload);
          else if (this.#draining && isDrainPing(payload)) this.#finalGoaway();
          return;
        case FrameType.GOAWAY:
          if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "GOAWAY on a stream");
          if (payload.length < 8) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "GOAWAY size");
          // The peer opens no more streams; those open finish, then we close.
          this.#peerGoaway = true;
          this.#maybeIdleClose();
          return;
        case FrameType.WINDOW_UPDATE:
          return this.#windowUpdate(id, payload);
        default:
          return; // Unknown frame types are ignored (RFC 9113 4.1).
      }
    } catch (err) {
      if (!(err instanceof H2Error) || err.streamId === 0) throw err;
      // A stream error: reset that stream only.
      log.debug("http2: stream error", { stream: err.streamId, error: err.message });
      const s = this.#streams.get(err.streamId);
      if (s !== undefined) this.reset(s, err.code);
      else {
        this.#writer.frame32(err.streamId, FrameType.RST_STREAM, 0, err.code);
        this.#remember(err.streamId);
      }
    }
  }

  #data(flags: number, id: number, payload: Uint8Array): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on stream 0");
    const n = payload.length;
    this.#recvWindow -= n;
    if (this.#recvWindow < 0) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the connection window");
    }
    // Connection credit goes back at once: what is buffered is bounded per
    // stream by the stream windows, which wait for the handler.
    this.#connCredit += n;
    if (this.#connCredit >= this.#connWindow >>> 2) {
      this.#writer.frame32(0, FrameType.WINDOW_UPDATE, 0, this.#connCredit);
      this.#recvWindow += this.#connCredit;
      this.#connCredit = 0;
    }
    let from = 0;
    let to = n;
    if (flags & Flags.PADDED) {
      if (n === 0 || payload[0] >= n) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "bad padding");
      from = 1;
      to = n - payload[0];
    }
    const s = this.#streams.get(id);
    if (s === undefined) {
      if (id > this.#maxSeen) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "DATA on an idle stream");
      if (this.#lateFrame(id)) return;
      // Both sides ended it, or the peer reset it: the peer must not send
      // DATA (RFC 9113 6.1, a stream error).
      throw new H2Error(ErrorCode.STREAM_CLOSED, "DATA on a closed stream", id);
    }
    if (s.remoteClosed) {
      throw new H2Error(ErrorCode.STREAM_CLOSED, "DATA after END_STREAM", id);
    }
    s.recvWindow -= n;
    if (s.recvWindow < 0) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "DATA beyond the stream window", id);
    }
    const endStream = (flags & Flags.END_STREAM) !== 0;
    if (endStream) s.remoteClosed = true;
    const chunk = to > from ? payload.slice(from, to) : EMPTY;
    s.credit += n - chunk.length;
    if (s.paused) s.held += chunk.length;
    const hold = this.#handler.data(s, chunk, endStream);
    if (!s.paused) {
      if (hold !== undefined) {
        s.paused = true;
        s.held += chunk.length;
        hold.then(() => this.#resume(s), () => this.#resume(s));
      } else s.credit += chunk.length;
    }
    if (endStream) {
      if (s.localClosed && s.queued === 0 && s.ending === undefined) this.#drop(s);
    } else this.#streamCredit(s);
  }

  #resume(s: H2Stream): void {
    s.paused = false;
    s.credit += s.held;
    s.held = 0;
    if (!s.gone && !s.remoteClosed && !this.#closed) this.#streamCredit(s);
  }

  #streamCredit(s: H2Stream): void {
    if (s.credit >= this.#streamWindow >>> 2) {
      this.#writer.frame32(s.id, FrameType.WINDOW_UPDATE, 0, s.credit);
      s.recvWindow += s.credit;
      s.credit = 0;
    }
  }

  #headersFrame(flags: number, id: number, payload: Uint8Array): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "HEADERS on stream 0");
    let from = 0;
    let to = payload.length;
    if (flags & Flags.PADDED) {
      if (to === 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "HEADERS size");
      to -= payload[0];
      from = 1;
    }
    if (flags & Flags.PRIORITY) from += 5;
    if (from > to) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "bad HEADERS padding");
    const fragment = payload.subarray(from, to);
    if (flags & Flags.END_HEADERS) {
      this.#block(id, flags, fragment);
      return;
    }
    this.#contId = id;
    this.#contFlags = flags;
    this.#contParts = [fragment.slice()];
    this.#contLength = fragment.length;
  }

  #continuation(flags: number, id: number, payload: Uint8Array): void {
    if (this.#contId === 0 || id !== this.#contId) {
      throw new H2Error(ErrorCode.PROTOCOL_ERROR, "unexpected CONTINUATION");
    }
    this.#contLength += payload.length;
    if (this.#contLength > this.#maxHeaderList) {
      throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, "header block too large");
    }
    this.#contParts.push(payload.slice());
    if ((flags & Flags.END_HEADERS) === 0) return;
    const block = new Uint8Array(this.#contLength);
    let off = 0;
    for (const p of this.#contParts) {
      block.set(p, off);
      off += p.length;
    }
    const first = this.#contFlags;
    this.#contId = 0;
    this.#contParts = [];
    this.#contLength = 0;
    this.#block(id, first, block);
  }

  // A complete header block on stream `id`.
  #block(id: number, flags: number, block: Uint8Array): void {
    let fields: string[];
    try {
      fields = this.#decoder.decode(block, this.#maxHeaderList);
    } catch (err) {
      if (err instanceof HeaderListTooLarge) {
        throw new H2Error(ErrorCode.ENHANCE_YOUR_CALM, err.message);
      }
      if (err instanceof HpackError) throw new H2Error(ErrorCode.COMPRESSION_ERROR, err.message);
      throw err;
    }
    const endStream = (flags & Flags.END_STREAM) !== 0;
    const s = this.#streams.get(id);
    if (s !== undefined) {
      // Trailers: they must end the stream.
      if (s.remoteClosed) {
        throw new H2Error(ErrorCode.STREAM_CLOSED, "HEADERS after END_STREAM", id);
      }
      if (!endStream) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "trailers without END_STREAM", id);
      }
      s.remoteClosed = true;
      this.#handler.data(s, EMPTY, true);
      if (s.localClosed && s.queued === 0 && s.ending === undefined) this.#drop(s);
      return;
    }
    if (id <= this.#maxSeen) {
      if (this.#lateFrame(id)) return;
      throw new H2Error(ErrorCode.STREAM_CLOSED, "HEADERS on a closed stream", id);
    }
    if ((id & 1) === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, `even stream id ${id}`);
    this.#maxSeen = id;
    // After our final GOAWAY no new streams are taken (and their frames are ignored).
    if (this.#goawaySent) return;
    this.#lastId = id;
    if (this.#streams.size >= this.#maxStreams) {
      throw new H2Error(ErrorCode.REFUSED_STREAM, "too many streams", id);
    }
    const bad = malformed(fields);
    if (bad !== undefined) throw new H2Error(ErrorCode.PROTOCOL_ERROR, bad, id);
    const st = new H2Stream(id, this, this.#peerInitialWindow, this.#streamWindow);
    st.remoteClosed = endStream;
    this.#streams.set(id, st);
    this.#handler.request(st, fields, endStream);
  }

  #rstStream(id: number, payload: Uint8Array): void {
    if (id === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on stream 0");
    if (payload.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "RST_STREAM size");
    const s = this.#streams.get(id);
    if (s === undefined) {
      if (id > this.#maxSeen) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "RST_STREAM on an idle stream");
      }
      return;
    }
    s.resetCode = u32(payload, 0);
    this.#drop(s);
  }

  #settings(flags: number, id: number, payload: Uint8Array): void {
    if (id !== 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "SETTINGS on a stream");
    if (flags & Flags.ACK) {
      if (payload.length !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS ACK size");
      if (this.#settingsTimer !== undefined) {
        clearTimeout(this.#settingsTimer);
        this.#settingsTimer = undefined;
      }
      return;
    }
    if (payload.length % 6 !== 0) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "SETTINGS size");
    for (let o = 0; o < payload.length; o += 6) {
      const key = (payload[o] << 8) | payload[o + 1];
      const v = u32(payload, o + 2);
      switch (key) {
        case Setting.HEADER_TABLE_SIZE:
          this.#sizeUpdate = true;
          break;
        case Setting.ENABLE_PUSH:
          if (v > 1) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "bad ENABLE_PUSH");
          break;
        case Setting.INITIAL_WINDOW_SIZE: {
          if (v > MAX_WINDOW) {
            throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE too large");
          }
          const delta = v - this.#peerInitialWindow;
          this.#peerInitialWindow = v;
          for (const s of this.#streams.values()) {
            s.sendWindow += delta;
            if (s.sendWindow > MAX_WINDOW) {
              throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow");
            }
          }
          if (delta > 0) { for (const s of [...this.#streams.values()]) this.#pump(s); }
          break;
        }
        case Setting.MAX_FRAME_SIZE:
          if (v < DEFAULT_MAX_FRAME || v > 0xffffff) {
            throw new H2Error(ErrorCode.PROTOCOL_ERROR, "bad MAX_FRAME_SIZE");
          }
          this.#peerMaxFrame = v;
          break;
        default:
          break; // Others (and unknown ones) need nothing from a server.
      }
    }
    this.#writer.reserve(0, FrameType.SETTINGS, Flags.ACK, 0);
  }

  #windowUpdate(id: number, payload: Uint8Array): void {
    if (payload.length !== 4) throw new H2Error(ErrorCode.FRAME_SIZE_ERROR, "WINDOW_UPDATE size");
    const inc = u32(payload, 0) & MAX_WINDOW;
    if (id === 0) {
      if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0");
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "connection window overflow");
      }
      const blocked = [...this.#blocked];
      this.#blocked.clear();
      for (const s of blocked) this.#pump(s);
      return;
    }
    const s = this.#streams.get(id);
    if (s === undefined) {
      if (id > this.#maxSeen) {
        throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream");
      }
      return;
    }
    if (inc === 0) throw new H2Error(ErrorCode.PROTOCOL_ERROR, "WINDOW_UPDATE of 0", id);
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      throw new H2Error(ErrorCode.FLOW_CONTROL_ERROR, "stream window overflow", id);
    }
    this.#pump(s);
  }
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

function isDrainPing(b: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (b[i] !== DRAIN_PING[i]) return false;
  return true;
}

function wake(s: H2Stream): void {
  const waiters = s.waiters;
  if (waiters.length === 0) return;
  s.waiters = [];
  for (const w of waiters) w();
}

/** Why a request's header list is malformed (RFC 9113 8.2, 8.3), or undefined. */
export function malformed(fields: string[]): string | undefined {
  let regular = false;
  let method = false, scheme = false, path = false;
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    if (name.length === 0) return "empty header name";
    if (name.charCodeAt(0) === 0x3a) {
      if (regular) return `pseudo-header ${name} after regular headers`;
      let seen: boolean;
      if (name === ":method") [seen, method] = [method, true];
      else if (name === ":scheme") [seen, scheme] = [scheme, true];
      else if (name === ":path") [seen, path] = [path, true];
      else if (name === ":authority") seen = false;
      else return `unknown pseudo-header ${name}`;
      if (seen) return `duplicate ${name}`;
      if (name === ":path" && fields[i + 1] === "") return "empty :path";
      continue;
    }
    regular = true;
    for (let j = 0; j < name.length; j++) {
      const c = name.charCodeAt(j);
      if (c >= 0x41 && c <= 0x5a) return `upper-case header name ${name}`;
    }
    if (CONNECTION_SPECIFIC.has(name)) return `connection-specific header ${name}`;
    if (name === "te" && fields[i + 1] !== "trailers") return "te other than trailers";
  }
  if (!method || !scheme || !path) return "missing :method, :scheme or :path";
  return undefined;
}

function isGoneError(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted ||
    err instanceof Deno.errors.ConnectionReset || err instanceof Deno.errors.BrokenPipe;
}
