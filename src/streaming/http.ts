/**
 * Just enough HTTP/1.1 for the streaming server: read one request head from
 * a raw TCP connection (keeping any bytes that follow it, which belong to the
 * upgraded protocol), and write a plain response or a 101 Switching
 * Protocols. The connection is never reused for a second request.
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { concatBytes } from "../bytes/mod.ts";

/** The largest request head accepted. */
const MAX_HEAD = 16 * 1024;

/** What the streaming protocols need of a connection (a Deno.Conn, or an {@link IdleConn}). */
export interface ByteConn {
  /** Reads into `p`; null at end of stream. */
  read(p: Uint8Array): Promise<number | null>;
  /** Writes some of `p`; the count written. */
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/**
 * A connection that closes itself after `idleMs` without a read or a write
 * completing (containerd's stream_idle_timeout); 0 never closes it.
 */
export class IdleConn implements ByteConn {
  #conn: ByteConn;
  #idleMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** Watches `conn` for `idleMs` of silence. */
  constructor(conn: ByteConn, idleMs: number) {
    this.#conn = conn;
    this.#idleMs = idleMs;
    this.#touch();
  }

  #touch(): void {
    if (this.#idleMs <= 0 || this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      log.debug("streaming connection idle, closing", { idleMs: this.#idleMs });
      this.close();
    }, this.#idleMs);
  }

  async read(p: Uint8Array): Promise<number | null> {
    const n = await this.#conn.read(p);
    this.#touch();
    return n;
  }

  async write(p: Uint8Array): Promise<number> {
    const n = await this.#conn.write(p);
    this.#touch();
    return n;
  }

  /** Closes the connection (once) and stops the timer. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    clearTimeout(this.#timer);
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }
}

/** Writes all of `bytes` to `w` (Deno's write may take only part). */
export async function writeAll(
  w: { write(p: Uint8Array): Promise<number> },
  bytes: Uint8Array,
): Promise<void> {
  let off = 0;
  while (off < bytes.length) off += await w.write(bytes.subarray(off));
}

/** A parsed request head. */
export interface RequestHead {
  method: string;
  /** The path without the query, e.g. "/exec/abc". */
  path: string;
  query: URLSearchParams;
  /** Header names lower-case; repeated headers keep every value in order. */
  headers: Map<string, string[]>;
  /** Bytes read past the head. */
  rest: Uint8Array;
}

/** All values of header `name`, split at commas and trimmed. */
export function headerList(head: RequestHead, name: string): string[] {
  return (head.headers.get(name.toLowerCase()) ?? []).flatMap((v) => v.split(","))
    .map((v) => v.trim()).filter((v) => v !== "");
}

/** The first value of header `name`, or "". */
export function headerValue(head: RequestHead, name: string): string {
  return head.headers.get(name.toLowerCase())?.[0] ?? "";
}

function bad(msg: string): BerthError {
  return new BerthError(Code.InvalidArgument, `http: ${msg}`);
}

function findHeadEnd(buf: Uint8Array, from: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < buf.length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
  }
  return -1;
}

/** Parses the text of a request head (without the blank line). */
export function parseHead(text: string, rest: Uint8Array = new Uint8Array(0)): RequestHead {
  const lines = text.split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/1\.[01]$/.exec(lines[0]);
  if (!m) throw bad(`malformed request line ${JSON.stringify(lines[0].slice(0, 80))}`);
  const headers = new Map<string, string[]>();
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    if (colon <= 0 || /\s/.test(line.slice(0, colon))) {
      throw bad(`malformed header line ${JSON.stringify(line.slice(0, 80))}`);
    }
    const name = line.slice(0, colon).toLowerCase();
    const list = headers.get(name) ?? [];
    list.push(line.slice(colon + 1).trim());
    headers.set(name, list);
  }
  const url = new URL(m[2], "http://streaming.invalid");
  return { method: m[1], path: url.pathname, query: url.searchParams, headers, rest };
}

/** Reads one request head from `conn`; null when the peer closed first. */
export async function readRequestHead(conn: ByteConn): Promise<RequestHead | null> {
  let buf: Uint8Array = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  for (;;) {
    const n = await conn.read(chunk);
    if (n === null) {
      if (buf.length === 0) return null;
      throw bad("connection closed inside the request head");
    }
    const from = buf.length;
    buf = concatBytes(buf, chunk.subarray(0, n));
    const end = findHeadEnd(buf, from);
    if (end >= 0) {
      return parseHead(new TextDecoder().decode(buf.subarray(0, end)), buf.slice(end + 4));
    }
    if (buf.length > MAX_HEAD) throw bad(`request head larger than ${MAX_HEAD} bytes`);
  }
}

/** Writes a complete response with a text body; the connection is then done. */
export async function writeResponse(
  conn: ByteConn,
  status: number,
  reason: string,
  body = "",
  headers: [string, string][] = [],
): Promise<void> {
  const bytes = new TextEncoder().encode(body);
  const lines = [
    `HTTP/1.1 ${status} ${reason}`,
    "Content-Type: text/plain; charset=utf-8",
    "X-Content-Type-Options: nosniff",
    `Content-Length: ${bytes.length}`,
    "Connection: close",
    ...headers.map(([k, v]) => `${k}: ${v}`),
  ];
  await writeAll(conn, new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
  await writeAll(conn, bytes);
}

/** Writes a 101 Switching Protocols head with `headers`. */
export async function writeSwitchingProtocols(
  conn: ByteConn,
  headers: [string, string][],
): Promise<void> {
  const lines = ["HTTP/1.1 101 Switching Protocols", ...headers.map(([k, v]) => `${k}: ${v}`)];
  await writeAll(conn, new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));
}
