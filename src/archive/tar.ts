/**
 * Reading and writing tar streams.
 *
 * Reading uses tar-stream@3: it streams (entries and their data arrive as
 * they are read, so a layer is never held in memory), it knows the formats
 * found in the wild (ustar, GNU long names, PAX, base-256 numbers), it is
 * small, and it runs unchanged in Deno through the npm: specifier.
 *
 * One thing is changed: tar-stream decodes PAX record values as UTF-8
 * text, but extended-attribute records (SCHILY.xattr.*) carry raw bytes
 * (security.capability is binary) that UTF-8 would mangle. So PAX headers
 * are decoded by berth (one hook on the extractor, below), keeping
 * SCHILY.xattr.* values one character per byte. Writing is berth's own
 * (packTar), for the same reason.
 *
 * @module
 */

import { concatBytes } from "../bytes/mod.ts";
// @ts-types="./tar_stream.d.ts"
import tarStream from "tar-stream";

const XATTR_PREFIX = "SCHILY.xattr.";
const utf8 = new TextDecoder();
const utf8Enc = new TextEncoder();

function latin1(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return s;
}

function fromLatin1(s: string): Uint8Array {
  const out = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) out[i] = s.charCodeAt(i) & 0xff;
  return out;
}

/** Parses PAX records: SCHILY.xattr.* values stay bytes (latin1), the rest is UTF-8. */
export function decodePax(buf: Uint8Array): Record<string, string> {
  const result: Record<string, string> = {};
  while (buf.length) {
    let i = 0;
    while (i < buf.length && buf[i] !== 0x20) i++;
    const len = parseInt(utf8.decode(buf.subarray(0, i)), 10);
    if (!len || len > buf.length) return result;
    const record = buf.subarray(i + 1, len - 1); // without the trailing newline
    const eq = record.indexOf(0x3d);
    if (eq === -1) return result;
    const key = utf8.decode(record.subarray(0, eq));
    const value = record.subarray(eq + 1);
    result[key] = key.startsWith(XATTR_PREFIX) ? latin1(value) : utf8.decode(value);
    buf = buf.subarray(len);
  }
  return result;
}

function paxRecord(key: string, value: Uint8Array): Uint8Array {
  const body = new Uint8Array([...utf8Enc.encode(` ${key}=`), ...value, 0x0a]);
  // The length prefix counts its own digits, so grow it until it is stable.
  let n = body.length + 1;
  while (String(n).length + body.length !== n) n = String(n).length + body.length;
  return new Uint8Array([...utf8Enc.encode(String(n)), ...body]);
}

/** Serialises PAX records (the inverse of {@link decodePax}). */
export function encodePax(records: Record<string, string>): Uint8Array {
  return concatBytes(
    ...Object.entries(records).map(([k, v]) =>
      paxRecord(k, k.startsWith(XATTR_PREFIX) ? fromLatin1(v) : utf8Enc.encode(v))
    ),
  );
}

// The extractor decodes long headers in one method; PAX ones go through
// berth's decoder, GNU long names stay with tar-stream.
{
  const probe = tarStream.extract() as { destroy(): void };
  const proto = Object.getPrototypeOf(probe) as {
    _decodeLongHeader(this: ExtractState, buf: Uint8Array): void;
  };
  probe.destroy();
  const original = proto._decodeLongHeader;
  proto._decodeLongHeader = function (this: ExtractState, buf: Uint8Array) {
    if (this._header.type === "pax-global-header") {
      this._paxGlobal = decodePax(buf);
    } else if (this._header.type === "pax-header") {
      this._pax = { ...(this._paxGlobal ?? {}), ...decodePax(buf) };
    } else {
      original.call(this, buf);
    }
  };
}

interface ExtractState {
  _header: { type: string };
  _pax: Record<string, string> | null;
  _paxGlobal: Record<string, string> | null;
}

// What stands in the ustar name field when the real name is in a PAX record.
function placeholder(name: string): string {
  const ascii = name.replace(/[^\x20-\x7e]/g, "_");
  return ascii.length <= 99 ? ascii : ascii.slice(ascii.length - 99);
}

/** Entry kinds as tar-stream names them. */
export type EntryType =
  | "file"
  | "link"
  | "symlink"
  | "character-device"
  | "block-device"
  | "directory"
  | "fifo"
  | "contiguous-file";

/** One tar header. */
export interface TarHeader {
  name: string;
  type: EntryType | string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: Date;
  linkname?: string | null;
  uname?: string;
  gname?: string;
  devmajor?: number;
  devminor?: number;
  /** PAX records of this entry (SCHILY.xattr.* values are one char per byte). */
  pax?: Record<string, string> | null;
}

/** Extended attributes of an entry, from its SCHILY.xattr.* records. */
export function xattrsOf(h: TarHeader): Record<string, Uint8Array> {
  const out: Record<string, Uint8Array> = {};
  for (const [k, v] of Object.entries(h.pax ?? {})) {
    if (k.startsWith(XATTR_PREFIX)) out[k.slice(XATTR_PREFIX.length)] = fromLatin1(v);
  }
  return out;
}

/** PAX records carrying `xattrs`. */
export function xattrRecords(xattrs: Record<string, Uint8Array>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(xattrs)) out[XATTR_PREFIX + k] = latin1(v);
  return out;
}

/** The precise modification time of an entry (PAX mtime has sub-second precision). */
export function mtimeOf(h: TarHeader): Date {
  const p = h.pax?.mtime;
  if (p && /^-?\d+(\.\d+)?$/.test(p)) return new Date(Math.round(Number(p) * 1000));
  return h.mtime;
}

/** One entry being read: its header and its data (read it fully, or it is skipped). */
export interface TarEntry {
  header: TarHeader;
  data: AsyncIterable<Uint8Array>;
}

interface NodeEntry extends AsyncIterable<Uint8Array> {
  header: TarHeader;
  resume(): void;
}

interface NodeExtract extends AsyncIterable<NodeEntry> {
  write(chunk: Uint8Array): boolean;
  end(): void;
  destroy(err?: Error): void;
  once(event: "drain" | "close", fn: () => void): void;
  readonly destroyed: boolean;
}

/**
 * Reads tar entries from `input` one by one. The body of an entry must be
 * consumed (or abandoned by moving on) before the next one arrives; input
 * is pulled only as fast as entries are consumed.
 */
export async function* readTar(input: ReadableStream<Uint8Array>): AsyncGenerator<TarEntry> {
  const ex = tarStream.extract() as unknown as NodeExtract;
  const reader = input.getReader();
  let feedError: unknown;
  // Resolved when the reading ends, however it ends: a consumer that stops
  // early leaves the extractor waiting for an entry that is never read, and
  // neither its drain nor its close would come then (a layer whose writer
  // failed hung its import forever).
  let stop!: () => void;
  const stopped = new Promise<void>((r) => stop = r);
  const feed = (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (!ex.write(value)) {
          await Promise.race([new Promise<void>((r) => ex.once("drain", r)), stopped]);
        }
        if (ex.destroyed) return;
      }
      ex.end();
    } catch (err) {
      feedError = err;
      ex.destroy(err instanceof Error ? err : new Error(String(err)));
    }
  })();
  // Iterated by hand: leaving a for-await early would await the extractor's
  // own return, which waits for the abandoned entry too.
  const entries = ex[Symbol.asyncIterator]();
  try {
    for (;;) {
      const { value: entry, done } = await entries.next();
      if (done) break;
      yield { header: entry.header, data: entry };
      // Drain whatever the consumer left unread so the next header can be parsed.
      for await (const _ of entry) { /* skip */ }
    }
    await feed;
    if (feedError) throw feedError;
  } catch (err) {
    throw feedError ?? err;
  } finally {
    stop();
    ex.destroy();
    await reader.cancel().catch(() => {});
    await feed;
  }
}

/** One entry to write: a header and, for files, exactly `header.size` bytes of data. */
export interface TarOut {
  header: TarHeader;
  data?: AsyncIterable<Uint8Array>;
}

const TYPEFLAGS: Record<string, string> = {
  file: "0",
  link: "1",
  symlink: "2",
  "character-device": "3",
  "block-device": "4",
  directory: "5",
  fifo: "6",
  "contiguous-file": "7",
};

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, "0") + "\0";
}

// One 512-byte ustar header block; the caller guarantees every field fits.
function ustarBlock(
  h: TarHeader,
  name: string,
  linkname: string,
  typeflag: string,
  size: number,
): Uint8Array {
  const b = new Uint8Array(512);
  const put = (off: number, len: number, text: string) =>
    b.set(utf8Enc.encode(text).subarray(0, len), off);
  put(0, 100, name);
  put(100, 8, octal(h.mode & 0o7777, 8));
  put(108, 8, octal(h.uid, 8));
  put(116, 8, octal(h.gid, 8));
  put(124, 12, octal(size, 12));
  put(136, 12, octal(Math.max(0, Math.floor(h.mtime.getTime() / 1000)), 12));
  put(148, 8, "        ");
  put(156, 1, typeflag);
  put(157, 100, linkname);
  put(257, 8, "ustar\x0000");
  put(265, 32, h.uname ?? "");
  put(297, 32, h.gname ?? "");
  put(329, 8, octal(h.devmajor ?? 0, 8));
  put(337, 8, octal(h.devminor ?? 0, 8));
  let sum = 0;
  for (const byte of b) sum += byte;
  put(148, 8, sum.toString(8).padStart(6, "0") + "\0 ");
  return b;
}

function padding(size: number): Uint8Array {
  return new Uint8Array((512 - (size % 512)) % 512);
}

/**
 * Writes entries as a POSIX (ustar + PAX) tar stream, pulled by its reader
 * so nothing piles up. Written by berth rather than with tar-stream's packer
 * because that one writes PAX values as UTF-8 text and turns mode 0 into a
 * default mode; layers need both exact.
 */
export function packTar(entries: AsyncIterable<TarOut>): ReadableStream<Uint8Array> {
  async function* blocks(): AsyncGenerator<Uint8Array> {
    for await (const { header: h, data } of entries) {
      const typeflag = TYPEFLAGS[h.type];
      if (!typeflag) throw new Error(`cannot write tar entry of type ${h.type}`);
      const size = h.type === "file" || h.type === "contiguous-file" ? h.size : 0;
      const name = h.type === "directory" && !h.name.endsWith("/") ? `${h.name}/` : h.name;
      const linkname = h.linkname ?? "";
      const fits = (s: string, n: number) => /^[\x20-\x7e]*$/.test(s) && s.length <= n;
      const records: Record<string, string> = { ...(h.pax ?? {}) };
      if (!fits(name, 100)) records.path = name;
      if (!fits(linkname, 100)) records.linkpath = linkname;
      if (h.uid > 0o7777777) records.uid = String(h.uid);
      if (h.gid > 0o7777777) records.gid = String(h.gid);
      if (size > 0o77777777777) records.size = String(size);
      if (Object.keys(records).length > 0) {
        const body = encodePax(records);
        yield ustarBlock(
          { ...h, mode: 0o644, uid: 0, gid: 0, uname: "", gname: "", devmajor: 0, devminor: 0 },
          "PaxHeader",
          "",
          "x",
          body.length,
        );
        yield body;
        yield padding(body.length);
      }
      yield ustarBlock(
        { ...h, uid: records.uid ? 0 : h.uid, gid: records.gid ? 0 : h.gid },
        records.path ? placeholder(name) : name,
        records.linkpath ? placeholder(linkname) : linkname,
        typeflag,
        records.size ? 0 : size,
      );
      if (size > 0) {
        if (!data) throw new Error(`tar entry ${h.name}: ${size} bytes announced, no data given`);
        let written = 0;
        for await (const chunk of data) {
          const part = chunk.subarray(0, size - written);
          if (part.length > 0) yield part;
          written += part.length;
          if (written >= size) break;
        }
        // A file that shrank while being read is padded so the archive stays well-formed.
        if (written < size) yield new Uint8Array(size - written);
        yield padding(size);
      }
    }
    yield new Uint8Array(1024);
  }
  return ReadableStream.from(blocks());
}
