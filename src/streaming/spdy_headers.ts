/**
 * SPDY/3 header blocks: the name/value block layout (32-bit counts and
 * lengths, names lower-case, several values of one name joined by NUL) and
 * its zlib compression with SPDY/3's fixed dictionary. Each direction of a
 * connection keeps one zlib context for the connection's whole life, and
 * every block ends with a sync flush, so a block is only meaningful after
 * all earlier blocks of the same direction: blocks must be compressed in
 * the order their frames go out and decompressed in the order they arrive.
 * @module
 */

import { Deflate, Inflate, Z_SYNC_FLUSH } from "pako";
import { BerthError, Code } from "../errdefs/mod.ts";
import { concatBytes } from "../bytes/mod.ts";

/** Header names (lower-case) to their values. */
export type HeaderMap = Map<string, string[]>;

// The dictionary of SPDY/3 (section 2.6.10.1): these names, each preceded by
// its length as a 32-bit big-endian word, then the literal tail below.
// deno-fmt-ignore
const DICTIONARY_WORDS = [
  "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
  "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
  "cache-control", "connection", "content-base", "content-encoding", "content-language",
  "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
  "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since", "if-none-match",
  "if-range", "if-unmodified-since", "last-modified", "location", "max-forwards", "pragma",
  "proxy-authenticate", "proxy-authorization", "range", "referer", "retry-after", "server", "te",
  "trailer", "transfer-encoding", "upgrade", "user-agent", "vary", "via", "warning",
  "www-authenticate", "method", "get", "status", "200 OK", "version", "HTTP/1.1", "url",
  "public", "set-cookie", "keep-alive", "origin",
];
const DICTIONARY_TAIL = "100101201202205206300302303304305306307402405406407408409410411412" +
  "413414415416417502504505203 Non-Authoritative Information204 No Content301 Moved " +
  "Permanently400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server " +
  "Error501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct " +
  "Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png," +
  "image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript," +
  "publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";

/** SPDY/3's zlib dictionary for header blocks (1423 bytes). */
export const HEADER_DICTIONARY: Uint8Array = (() => {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  for (const w of DICTIONARY_WORDS) {
    const b = enc.encode(w);
    const len = new Uint8Array(4);
    new DataView(len.buffer).setUint32(0, b.length);
    parts.push(len, b);
  }
  parts.push(enc.encode(DICTIONARY_TAIL));
  return concatBytes(...parts);
})();

/** Lays out `headers` as an uncompressed name/value block. */
export function encodeHeaderBlock(headers: HeaderMap): Uint8Array {
  const enc = new TextEncoder();
  const parts: Uint8Array[] = [];
  const word = (n: number) => {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, n);
    parts.push(b);
  };
  word(headers.size);
  for (const [name, values] of headers) {
    const n = enc.encode(name.toLowerCase());
    const v = enc.encode(values.join("\0"));
    word(n.length);
    parts.push(n);
    word(v.length);
    parts.push(v);
  }
  return concatBytes(...parts);
}

function badBlock(msg: string): BerthError {
  return new BerthError(Code.InvalidArgument, `spdy: header block: ${msg}`);
}

/** Parses an uncompressed name/value block; names come back lower-case. */
export function decodeHeaderBlock(block: Uint8Array): HeaderMap {
  const v = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const dec = new TextDecoder("utf-8", { fatal: true });
  let off = 0;
  const take = (): Uint8Array => {
    if (off + 4 > block.length) throw badBlock("truncated");
    const n = v.getUint32(off);
    off += 4;
    if (off + n > block.length) throw badBlock("truncated");
    const b = block.subarray(off, off + n);
    off += n;
    return b;
  };
  if (block.length < 4) throw badBlock("truncated");
  const count = v.getUint32(0);
  off = 4;
  const out: HeaderMap = new Map();
  for (let i = 0; i < count; i++) {
    const name = dec.decode(take()).toLowerCase();
    if (name === "") throw badBlock("empty header name");
    const values = dec.decode(take()).split("\0");
    if (out.has(name)) throw badBlock(`duplicate header ${JSON.stringify(name)}`);
    out.set(name, values);
  }
  if (off !== block.length) throw badBlock("trailing bytes");
  return out;
}

/**
 * One connection's header codec: {@link compress} for what we send,
 * {@link decompress} for what we receive, each direction one zlib context
 * for the connection's life with a sync flush after every block. pako, not
 * node:zlib: Deno 2.9's node:zlib deflate ignores its `dictionary` option
 * (its streams carry no FDICT), so it cannot write SPDY's header stream.
 */
export class HeaderCodec {
  #deflate = new Deflate({ dictionary: HEADER_DICTIONARY });
  #inflate = new Inflate({ dictionary: HEADER_DICTIONARY });
  #out: Uint8Array[] = [];
  #in: Uint8Array[] = [];
  #broken = "";

  constructor() {
    this.#deflate.onData = (c) => void this.#out.push(c);
    this.#inflate.onData = (c) => void this.#in.push(c);
  }

  /** Compresses `headers` into the next block of the outgoing context. */
  compress(headers: HeaderMap): Uint8Array {
    this.#out = [];
    if (!this.#deflate.push(encodeHeaderBlock(headers), Z_SYNC_FLUSH)) {
      throw new BerthError(Code.Internal, `spdy: header compression: ${this.#deflate.msg}`);
    }
    return concatBytes(...this.#out);
  }

  /** Decompresses the next block of the incoming context. */
  decompress(block: Uint8Array): HeaderMap {
    if (this.#broken) throw badBlock(`earlier block was corrupt (${this.#broken})`);
    this.#in = [];
    if (!this.#inflate.push(block, Z_SYNC_FLUSH) || this.#inflate.err) {
      this.#broken = this.#inflate.msg || `zlib status ${this.#inflate.err}`;
      throw badBlock(`corrupt compressed block (${this.#broken})`);
    }
    return decodeHeaderBlock(concatBytes(...this.#in));
  }
}
