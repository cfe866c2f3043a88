/**
 * A WebSocket server endpoint (RFC 6455) over an upgraded TCP connection,
 * and the Kubernetes channel protocols on top of it that newer clients use
 * for exec and attach: every binary message starts with one byte naming the
 * channel (0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize), and from
 * `v5.channel.k8s.io` on the client may half-close a channel by sending
 * channel 255 with the channel's number. The base64 variants are not served.
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { concatBytes } from "../bytes/mod.ts";
import {
  type ByteConn,
  headerList,
  headerValue,
  type RequestHead,
  writeAll,
  writeResponse,
  writeSwitchingProtocols,
} from "./http.ts";
import { type Channels, decodeResizes, encodeOutcome, type Outcome } from "./remotecommand.ts";
import type { StreamOptions } from "./types.ts";

/** Channel subprotocols served, most preferred first. */
export const WEBSOCKET_PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io"];

const ACCEPT_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/** The largest message accepted from a client. */
const MAX_MESSAGE = 1 << 20;

/** Frame opcodes. */
export enum Opcode {
  Continuation = 0,
  Text = 1,
  Binary = 2,
  Close = 8,
  Ping = 9,
  Pong = 10,
}

/** One frame, unmasked. */
export interface WsFrame {
  fin: boolean;
  opcode: Opcode;
  payload: Uint8Array;
}

/** Encodes a frame; `mask` (4 bytes) is for clients, servers send unmasked. */
export function encodeWsFrame(f: WsFrame, mask?: Uint8Array): Uint8Array {
  const n = f.payload.length;
  const lenBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const headLen = 2 + lenBytes + (mask ? 4 : 0);
  const out = new Uint8Array(headLen + n);
  const v = new DataView(out.buffer);
  out[0] = (f.fin ? 0x80 : 0) | f.opcode;
  out[1] = (mask ? 0x80 : 0) | (n < 126 ? n : n < 65536 ? 126 : 127);
  if (lenBytes === 2) v.setUint16(2, n);
  if (lenBytes === 8) v.setBigUint64(2, BigInt(n));
  if (mask) {
    out.set(mask, 2 + lenBytes);
    for (let i = 0; i < n; i++) out[headLen + i] = f.payload[i] ^ mask[i & 3];
  } else {
    out.set(f.payload, headLen);
  }
  return out;
}

function wsError(msg: string): BerthError {
  return new BerthError(Code.InvalidArgument, `websocket: ${msg}`);
}

/**
 * Splits bytes into frames as they arrive. With `requireMask` (a server)
 * an unmasked frame is a protocol error, as RFC 6455 demands.
 */
export class WsFrameDecoder {
  #buf: Uint8Array = new Uint8Array(0);
  #requireMask: boolean;

  /** A server's decoder requires masked frames. */
  constructor(requireMask = true) {
    this.#requireMask = requireMask;
  }

  /** Appends received bytes. */
  push(bytes: Uint8Array): void {
    this.#buf = concatBytes(this.#buf, bytes);
  }

  /** The next whole frame, unmasked, or undefined until more bytes arrive. */
  next(): WsFrame | undefined {
    const b = this.#buf;
    if (b.length < 2) return undefined;
    if (b[0] & 0x70) throw wsError("reserved bits set");
    const masked = (b[1] & 0x80) !== 0;
    if (this.#requireMask && !masked) throw wsError("client frame not masked");
    let len = b[1] & 0x7f;
    let off = 2;
    const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
    if (len === 126) {
      if (b.length < 4) return undefined;
      len = v.getUint16(2);
      off = 4;
    } else if (len === 127) {
      if (b.length < 10) return undefined;
      const big = v.getBigUint64(2);
      if (big > BigInt(MAX_MESSAGE)) throw wsError(`frame of ${big} bytes is too large`);
      len = Number(big);
      off = 10;
    }
    if (len > MAX_MESSAGE) throw wsError(`frame of ${len} bytes is too large`);
    const maskAt = off;
    if (masked) off += 4;
    if (b.length < off + len) return undefined;
    const payload = b.slice(off, off + len);
    if (masked) { for (let i = 0; i < len; i++) payload[i] ^= b[maskAt + (i & 3)]; }
    const opcode = b[0] & 0x0f;
    const fin = (b[0] & 0x80) !== 0;
    if (opcode >= 8 && (!fin || len > 125)) throw wsError("malformed control frame");
    if (![0, 1, 2, 8, 9, 10].includes(opcode)) throw wsError(`unknown opcode ${opcode}`);
    this.#buf = b.subarray(off + len);
    return { fin, opcode, payload };
  }
}

/** The Sec-WebSocket-Accept value for a client's key. */
export async function acceptKey(key: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-1", new TextEncoder().encode(key + ACCEPT_GUID));
  return btoa(String.fromCharCode(...new Uint8Array(digest)));
}

/** True when `head` asks for a websocket upgrade. */
export function isWebSocketRequest(head: RequestHead): boolean {
  return headerList(head, "upgrade").some((v) => v.toLowerCase() === "websocket") &&
    headerList(head, "connection").some((v) => v.toLowerCase() === "upgrade");
}

/** A server-side websocket: whole messages in, binary messages out. */
export class WebSocketConn {
  #conn: ByteConn;
  #decoder = new WsFrameDecoder(true);
  #writes: Promise<void> = Promise.resolve();
  #closed = false;

  /** Wraps an upgraded `conn`; `initial` holds bytes read past the request. */
  constructor(conn: ByteConn, initial: Uint8Array) {
    this.#conn = conn;
    if (initial.length > 0) this.#decoder.push(initial);
  }

  /** Yields each data message (text or binary) until the peer closes. */
  async *messages(): AsyncGenerator<Uint8Array> {
    const buf = new Uint8Array(64 * 1024);
    let parts: Uint8Array[] = [];
    let size = 0;
    try {
      for (;;) {
        let f: WsFrame | undefined;
        while ((f = this.#decoder.next()) !== undefined) {
          if (f.opcode === Opcode.Ping) {
            await this.#send({ fin: true, opcode: Opcode.Pong, payload: f.payload });
            continue;
          }
          if (f.opcode === Opcode.Pong) continue;
          if (f.opcode === Opcode.Close) {
            await this.close(1000);
            return;
          }
          if ((f.opcode === Opcode.Continuation) !== (parts.length > 0)) {
            throw wsError("unexpected continuation frame");
          }
          parts.push(f.payload);
          size += f.payload.length;
          if (size > MAX_MESSAGE) throw wsError("message too large");
          if (f.fin) {
            const msg = concatBytes(...parts);
            parts = [];
            size = 0;
            yield msg;
          }
        }
        if (this.#closed) return;
        const n = await this.#conn.read(buf);
        if (n === null) return;
        this.#decoder.push(buf.subarray(0, n));
      }
    } catch (err) {
      if (this.#closed) return;
      log.debug("websocket ended", { error: String(err) });
      await this.close(err instanceof BerthError ? 1002 : 1011);
    }
  }

  #send(f: WsFrame): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new BerthError(Code.Unavailable, "websocket is closed"));
    }
    const bytes = encodeWsFrame(f);
    const p = this.#writes.then(() => writeAll(this.#conn, bytes));
    this.#writes = p.catch(() => {});
    return p;
  }

  /** Sends one binary message. */
  sendBinary(data: Uint8Array): Promise<void> {
    return this.#send({ fin: true, opcode: Opcode.Binary, payload: data });
  }

  /** Sends a close frame with `code` and closes the TCP connection. */
  async close(code = 1000): Promise<void> {
    if (this.#closed) return;
    const payload = new Uint8Array(2);
    new DataView(payload.buffer).setUint16(0, code);
    await this.#send({ fin: true, opcode: Opcode.Close, payload }).catch(() => {});
    this.#closed = true;
    await this.#writes;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

const STDIN = 0, STDOUT = 1, STDERR = 2, ERROR = 3, RESIZE = 4, CLOSE_SIGNAL = 255;

/**
 * Completes the websocket handshake of `head` on `conn`, choosing the
 * client's first offered protocol among `served` (`fallback` when it offers
 * none). Answers failures itself (400) and resolves to undefined then.
 */
export async function upgradeWebSocket(
  conn: ByteConn,
  head: RequestHead,
  served: string[],
  fallback: string,
): Promise<{ ws: WebSocketConn; protocol: string } | undefined> {
  const key = headerValue(head, "sec-websocket-key");
  if (head.method !== "GET" || key === "" || headerValue(head, "sec-websocket-version") !== "13") {
    await writeResponse(
      conn,
      400,
      "Bad Request",
      "websocket: GET with a key and version 13 required",
    );
    return undefined;
  }
  const offered = headerList(head, "sec-websocket-protocol");
  const protocol = offered.length === 0 ? fallback : offered.find((p) => served.includes(p));
  if (protocol === undefined) {
    await writeResponse(
      conn,
      400,
      "Bad Request",
      `websocket: none of the offered protocols ${offered.join(", ")} is served (${
        served.join(", ")
      })`,
    );
    return undefined;
  }
  const headers: [string, string][] = [
    ["Upgrade", "websocket"],
    ["Connection", "Upgrade"],
    ["Sec-WebSocket-Accept", await acceptKey(key)],
  ];
  if (offered.length > 0) headers.push(["Sec-WebSocket-Protocol", protocol]);
  await writeSwitchingProtocols(conn, headers);
  return { ws: new WebSocketConn(conn, head.rest), protocol };
}

/**
 * The channels of a channel websocket: client messages on a channel feed
 * its readable, writes to a channel's writable become messages prefixed by
 * the channel's number. `closeSignal` (v5) lets the client end a channel.
 */
export class ChannelMux {
  readonly ws: WebSocketConn;
  /** Resolves once the client's side has ended (close frame, EOF, or error). */
  readonly pump: Promise<void>;
  #inputs = new Map<number, ReadableStreamDefaultController<Uint8Array>>();

  /** Starts reading `ws`; only channels asked for with {@link input} receive. */
  constructor(ws: WebSocketConn, closeSignal: boolean) {
    this.ws = ws;
    this.pump = (async () => {
      for await (const msg of ws.messages()) {
        if (msg.length === 0) continue;
        const ch = msg[0];
        if (ch === CLOSE_SIGNAL && closeSignal && msg.length >= 2) {
          this.endInput(msg[1]);
        } else if (msg.length > 1) {
          try {
            this.#inputs.get(ch)?.enqueue(msg.subarray(1));
          } catch { /* cancelled by its reader */ }
        }
      }
      for (const ch of [...this.#inputs.keys()]) this.endInput(ch);
    })();
  }

  /** What the client sends on channel `ch`. */
  input(ch: number): ReadableStream<Uint8Array> {
    return new ReadableStream<Uint8Array>({ start: (c) => void this.#inputs.set(ch, c) });
  }

  /** Ends channel `ch`'s input (the client closed it, or its session is over). */
  endInput(ch: number): void {
    try {
      this.#inputs.get(ch)?.close();
    } catch { /* cancelled by its reader */ }
    this.#inputs.delete(ch);
  }

  /** Sends `data` on channel `ch`. */
  send(ch: number, data: Uint8Array): Promise<void> {
    const msg = new Uint8Array(data.length + 1);
    msg[0] = ch;
    msg.set(data, 1);
    return this.ws.sendBinary(msg);
  }

  /** A writable whose chunks go out on channel `ch`; `onClose` runs when it is closed. */
  output(ch: number, onClose?: () => void): WritableStream<Uint8Array> {
    return new WritableStream<Uint8Array>({
      write: (chunk) => this.send(ch, chunk),
      close: () => onClose?.(),
    });
  }

  /** Closes the websocket and waits for the client side to end. */
  async close(): Promise<void> {
    await this.ws.close(1000);
    await this.pump;
  }
}

/**
 * Upgrades `head` on `conn` to a channel websocket for one exec or attach.
 * Answers the handshake's failures itself and resolves to undefined then.
 */
export async function openWebSocketChannels(
  conn: ByteConn,
  head: RequestHead,
  opts: StreamOptions,
): Promise<Channels | undefined> {
  const up = await upgradeWebSocket(conn, head, WEBSOCKET_PROTOCOLS, "channel.k8s.io");
  if (!up) return undefined;
  const { protocol } = up;
  const mux = new ChannelMux(up.ws, protocol.startsWith("v5."));
  const stdin = opts.stdin ? mux.input(STDIN) : undefined;
  const resize = opts.tty ? mux.input(RESIZE) : undefined;
  // The kubelet's first message tells the client the streams are ready.
  await mux.send(opts.stdout ? STDOUT : opts.stderr ? STDERR : ERROR, new Uint8Array(0));
  return {
    io: {
      stdin,
      stdout: opts.stdout ? mux.output(STDOUT) : undefined,
      stderr: opts.stderr && !opts.tty ? mux.output(STDERR) : undefined,
      tty: opts.tty,
      resize: resize ? decodeResizes(resize) : undefined,
    },
    async finish(outcome: Outcome): Promise<void> {
      const bytes = encodeOutcome(protocol, outcome);
      if (bytes) await mux.send(ERROR, bytes).catch(() => {});
      await mux.close();
    },
  };
}
