/**
 * The server side of a SPDY/3.1 connection, as the kubelet's streaming
 * clients (moby/spdystream) speak it: the client opens streams with
 * SYN_STREAM, the server accepts each with SYN_REPLY or refuses it with
 * RST_STREAM, DATA with FIN half-closes a direction, pings from the client
 * are echoed, and closing the connection resets every stream. Like
 * spdystream, no flow-control windows are enforced in either direction:
 * WINDOW_UPDATE and SETTINGS are read and ignored; instead, as there, the
 * connection stops reading while a stream's reader is behind (TCP's window
 * then holds the client back).
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { type ByteConn, writeAll } from "./http.ts";
import {
  encodeFrame,
  FLAG_FIN,
  FLAG_UNIDIRECTIONAL,
  type Frame,
  FrameDecoder,
  RstStatus,
} from "./spdy_frame.ts";
import { HeaderCodec, type HeaderMap } from "./spdy_headers.ts";

/** The most bytes one DATA frame carries when we send. */
const DATA_CHUNK = 32 * 1024;
/** Bytes a stream buffers for its reader before the connection stops reading. */
const STREAM_BUFFER = 1 << 20;
/** The largest frame accepted from a peer (header blocks included). */
const MAX_INCOMING_FRAME = 1 << 20;

/** One stream a client opened. */
export class SpdyStream {
  /** The stream id (odd: client-initiated). */
  readonly id: number;
  /** The SYN_STREAM's headers, names lower-case. */
  readonly headers: HeaderMap;
  /** What the client sends; closes at its FIN, a reset, or the connection's end. */
  readonly readable: ReadableStream<Uint8Array>;
  #conn: SpdyConnection;
  #controller!: ReadableStreamDefaultController<Uint8Array>;
  #remoteDone = false;
  #localDone = false;
  #reset = false;
  #cancelled = false;
  #waiters: (() => void)[] = [];

  /** @internal made by {@link SpdyConnection} only. */
  constructor(conn: SpdyConnection, id: number, headers: HeaderMap, unidirectional: boolean) {
    this.#conn = conn;
    this.id = id;
    this.headers = headers;
    this.#localDone = unidirectional;
    this.readable = new ReadableStream<Uint8Array>(
      {
        start: (c) => {
          this.#controller = c;
        },
        pull: () => this.#wake(),
        cancel: () => {
          this.#cancelled = true;
          this.#wake();
        },
      },
      new ByteLengthQueuingStrategy({ highWaterMark: STREAM_BUFFER }),
    );
  }

  #wake(): void {
    const w = this.#waiters;
    this.#waiters = [];
    for (const resolve of w) resolve();
  }

  /** The first value of header `name`, or "" when absent. */
  header(name: string): string {
    return this.headers.get(name.toLowerCase())?.[0] ?? "";
  }

  /** True once we sent FIN or the stream was reset. */
  get writeClosed(): boolean {
    return this.#localDone || this.#reset;
  }

  /** Sends `data` in DATA frames. */
  async write(data: Uint8Array): Promise<void> {
    if (this.writeClosed) {
      throw new BerthError(Code.FailedPrecondition, `spdy stream ${this.id} is closed for writing`);
    }
    for (let off = 0; off < data.length; off += DATA_CHUNK) {
      await this.#conn.send({
        type: "data",
        streamId: this.id,
        flags: 0,
        data: data.subarray(off, off + DATA_CHUNK),
      });
    }
  }

  /** Half-closes our direction (an empty DATA frame with FIN). */
  async closeWrite(): Promise<void> {
    if (this.writeClosed) return;
    this.#localDone = true;
    await this.#conn.send({
      type: "data",
      streamId: this.id,
      flags: FLAG_FIN,
      data: new Uint8Array(0),
    });
    this.#conn.maybeForget(this);
  }

  /** A WritableStream over {@link write}; closing it sends FIN. */
  writable(): WritableStream<Uint8Array> {
    return new WritableStream({
      write: (chunk) => this.write(chunk),
      close: () => this.closeWrite(),
    });
  }

  /** Tears the stream down in both directions (RST_STREAM). */
  async reset(status: RstStatus = RstStatus.Cancel): Promise<void> {
    if (this.#reset) return;
    this.remoteEnded(true);
    await this.#conn.send({ type: "rst_stream", streamId: this.id, status }).catch(() => {});
  }

  /**
   * @internal data arrived from the peer. Resolves once the reader has room
   * again: the connection stops reading while a stream's buffer is full, as
   * spdystream's unbuffered data channel makes its frame reader wait.
   */
  received(data: Uint8Array): Promise<void> | undefined {
    if (this.#remoteDone || this.#cancelled || data.length === 0) return;
    this.#controller.enqueue(data);
    if ((this.#controller.desiredSize ?? 1) > 0) return;
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** @internal the peer finished sending, or (`reset`) the stream is gone. */
  remoteEnded(reset = false): void {
    if (reset) this.#reset = true;
    if (!this.#remoteDone) {
      this.#remoteDone = true;
      try {
        this.#controller.close();
      } catch { /* already cancelled by its reader */ }
    }
    this.#wake();
    this.#conn.maybeForget(this);
  }

  /** @internal both directions are done. */
  get finished(): boolean {
    return this.#remoteDone && this.writeClosed;
  }
}

/** Decides on a new stream: undefined accepts it, a string refuses it (logged). */
export type StreamHandler = (stream: SpdyStream) => string | undefined;

/** A server-side SPDY/3.1 connection over an upgraded TCP connection. */
export class SpdyConnection {
  #conn: ByteConn;
  #codec = new HeaderCodec();
  #decoder = new FrameDecoder(MAX_INCOMING_FRAME);
  #streams = new Map<number, SpdyStream>();
  #lastStreamId = 0;
  #writes: Promise<void> = Promise.resolve();
  #closing = false;
  #closed = false;
  #goneAway = false;
  #onStream: StreamHandler;
  #done: Promise<void>;
  #resolveDone!: () => void;

  /** Wraps `conn`; `initial` holds bytes already read past the HTTP request. */
  constructor(
    conn: ByteConn,
    initial: Uint8Array,
    onStream: StreamHandler,
  ) {
    this.#conn = conn;
    this.#onStream = onStream;
    if (initial.length > 0) this.#decoder.push(initial);
    this.#done = new Promise((r) => this.#resolveDone = r);
  }

  /** Resolves when the connection has ended (closed by either side). */
  get done(): Promise<void> {
    return this.#done;
  }

  /** Reads and handles frames until the peer goes away or the connection closes. */
  async serve(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    try {
      while (!this.#closed) {
        let frame: Frame | undefined;
        while ((frame = this.#decoder.next()) !== undefined) {
          await this.#handle(frame);
        }
        const n = await this.#conn.read(buf);
        if (n === null) break;
        this.#decoder.push(buf.subarray(0, n));
      }
    } catch (err) {
      if (!this.#closed) log.debug("spdy connection ended", { error: String(err) });
    } finally {
      await this.close();
    }
  }

  async #handle(f: Frame): Promise<void> {
    switch (f.type) {
      case "syn_stream": {
        // Decompress even a refused stream's block: the zlib context must see every block.
        const headers = this.#codec.decompress(f.headerBlock);
        if (this.#goneAway) return;
        if (f.streamId % 2 === 0 || f.streamId <= this.#lastStreamId) {
          await this.send({
            type: "rst_stream",
            streamId: f.streamId,
            status: RstStatus.ProtocolError,
          });
          return;
        }
        this.#lastStreamId = f.streamId;
        const stream = new SpdyStream(
          this,
          f.streamId,
          headers,
          (f.flags & FLAG_UNIDIRECTIONAL) !== 0,
        );
        this.#streams.set(f.streamId, stream);
        if (f.flags & FLAG_FIN) stream.remoteEnded();
        const refusal = this.#onStream(stream);
        if (refusal !== undefined) {
          log.warn("spdy stream refused", { stream: f.streamId, reason: refusal });
          await stream.reset(RstStatus.RefusedStream);
          return;
        }
        await this.send({
          type: "syn_reply",
          streamId: f.streamId,
          flags: 0,
          headerBlock: this.#codec.compress(new Map()),
        });
        return;
      }
      case "data": {
        const s = this.#streams.get(f.streamId);
        if (!s) return; // a stream already gone: spdystream drops these too
        if (f.flags & FLAG_FIN) {
          s.received(f.data);
          s.remoteEnded();
        } else {
          await s.received(f.data);
        }
        return;
      }
      case "headers": {
        this.#codec.decompress(f.headerBlock);
        if (f.flags & FLAG_FIN) this.#streams.get(f.streamId)?.remoteEnded();
        return;
      }
      case "syn_reply":
        // Only a server's own streams get replies, and this server opens none.
        this.#codec.decompress(f.headerBlock);
        return;
      case "rst_stream":
        this.#streams.get(f.streamId)?.remoteEnded(true);
        return;
      case "ping":
        // Our ping ids would be even; echo the client's (odd) ones.
        if (f.id % 2 === 1) await this.send(f);
        return;
      case "goaway":
        this.#goneAway = true;
        return;
      case "settings":
      case "window_update":
      case "unknown":
        return;
    }
  }

  /** Sends one frame (frames go out in call order). */
  send(f: Frame): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new BerthError(Code.Unavailable, "spdy connection is closed"));
    }
    const bytes = encodeFrame(f);
    const p = this.#writes.then(() => {
      if (this.#closed) throw new BerthError(Code.Unavailable, "spdy connection is closed");
      return writeAll(this.#conn, bytes);
    });
    this.#writes = p.catch(() => {});
    return p;
  }

  /** @internal drops a stream that is finished both ways. */
  maybeForget(s: SpdyStream): void {
    if (s.finished) this.#streams.delete(s.id);
  }

  /**
   * Resets every open stream, waits for queued frames, and closes the TCP
   * connection. Safe to call more than once.
   */
  async close(): Promise<void> {
    if (this.#closing) return this.#done;
    this.#closing = true;
    for (const s of [...this.#streams.values()]) {
      if (!s.finished) await s.reset(RstStatus.Cancel);
      else s.remoteEnded();
    }
    await this.#writes;
    this.#closed = true;
    for (const s of this.#streams.values()) s.remoteEnded(true);
    this.#streams.clear();
    try {
      this.#conn.close();
    } catch { /* already closed */ }
    this.#resolveDone();
  }
}
