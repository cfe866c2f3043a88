/**
 * HPACK (RFC 7541), as much as a gRPC server needs: a full decoder (static
 * and dynamic table, size updates, integers, literals, Huffman) and a small
 * stateless encoder (indexed static entries and literals without indexing,
 * no Huffman), so that what we send never touches the peer's table.
 *
 * Header names and values are octet strings; they are handed out as
 * latin1 strings (one char per octet), which keeps table sizes exact.
 *
 * @module
 */

import { HUFFMAN_CODES, HUFFMAN_LENGTHS, STATIC_TABLE } from "./hpack_tables.ts";

/** A malformed header block: a connection error (COMPRESSION_ERROR) in HTTP/2. */
export class HpackError extends Error {
  /** Makes an error saying what was wrong with the block. */
  constructor(message: string) {
    super(`hpack: ${message}`);
    this.name = "HpackError";
  }
}

/**
 * A header list that decodes to more than the limit: a few bytes of
 * indexed references can expand without bound, so decoding stops there
 * (and the connection must end: its table state is lost).
 */
export class HeaderListTooLarge extends HpackError {
  /** Makes the error for a list past `limit` octets. */
  constructor(limit: number) {
    super(`header list larger than ${limit} octets`);
    this.name = "HeaderListTooLarge";
  }
}

// Per-entry overhead of the table size accounting (RFC 7541 4.1).
const ENTRY_OVERHEAD = 32;
const EOS = 256;

// The Huffman code as a binary tree: node n's children are tree[2n] and
// tree[2n+1]; a negative child is a leaf holding -(symbol + 1); 0 is no child.
const TREE = (() => {
  const tree = new Int32Array(2 * 512);
  let nodes = 1;
  const add = (sym: number, code: number, len: number) => {
    let node = 0;
    for (let i = len - 1; i >= 0; i--) {
      const slot = 2 * node + ((code >>> i) & 1);
      if (i === 0) tree[slot] = -(sym + 1);
      else {
        if (tree[slot] === 0) tree[slot] = nodes++;
        node = tree[slot];
      }
    }
  };
  for (let s = 0; s < 256; s++) add(s, HUFFMAN_CODES[s], HUFFMAN_LENGTHS[s]);
  add(EOS, 0x3fffffff, 30);
  return tree;
})();

/** Decodes a Huffman-coded string (RFC 7541 5.2) into octets as a latin1 string. */
export function huffmanDecode(src: Uint8Array): string {
  const out: number[] = [];
  let node = 0;
  let pending = 0; // bits read since the last symbol
  let ones = true; // ...and all of them were 1 (a valid padding so far)
  for (let i = 0; i < src.length; i++) {
    const byte = src[i];
    for (let b = 7; b >= 0; b--) {
      const bit = (byte >>> b) & 1;
      const next = TREE[2 * node + bit];
      if (next < 0) {
        const sym = -next - 1;
        if (sym === EOS) throw new HpackError("EOS symbol inside a Huffman string");
        out.push(sym);
        node = 0;
        pending = 0;
        ones = true;
      } else {
        node = next;
        pending++;
        if (bit === 0) ones = false;
      }
    }
  }
  if (pending > 7 || !ones) throw new HpackError("bad Huffman padding");
  return octets(out, 0, out.length);
}

/** Huffman-encodes latin1 string `s` (for tests and completeness; responses use plain literals). */
export function huffmanEncode(s: string): Uint8Array {
  const out: number[] = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i) & 0xff;
    let len = HUFFMAN_LENGTHS[c];
    const code = HUFFMAN_CODES[c];
    while (len > 0) {
      const take = Math.min(len, 8 - bits);
      acc = (acc << take) | ((code >>> (len - take)) & ((1 << take) - 1));
      bits += take;
      len -= take;
      if (bits === 8) {
        out.push(acc & 0xff);
        acc = 0;
        bits = 0;
      }
    }
  }
  if (bits > 0) out.push(((acc << (8 - bits)) | ((1 << (8 - bits)) - 1)) & 0xff);
  return Uint8Array.from(out);
}

function octets(a: ArrayLike<number>, from: number, to: number): string {
  let s = "";
  for (let i = from; i < to; i += 4096) {
    s += String.fromCharCode.apply(
      null,
      Array.prototype.slice.call(a, i, Math.min(to, i + 4096)) as number[],
    );
  }
  return s;
}

/** Adds the field just decoded (the last two of `out`) to the list's size; throws past `max`. */
function countField(out: string[], size: number, max: number): number {
  const total = size + out[out.length - 2].length + out[out.length - 1].length + ENTRY_OVERHEAD;
  if (total > max) throw new HeaderListTooLarge(max);
  return total;
}

/**
 * Decodes header blocks of one connection (the decoder keeps the dynamic
 * table between blocks, so every block of the connection must go through it,
 * in order, even those of streams being ignored).
 */
export class HpackDecoder {
  // Newest entry last; names and values alternate.
  #dyn: string[] = [];
  #size = 0;
  #max: number;
  #limit: number;

  /** `maxTableSize` is our SETTINGS_HEADER_TABLE_SIZE (what the peer may use). */
  constructor(maxTableSize = 4096) {
    this.#max = maxTableSize;
    this.#limit = maxTableSize;
  }

  /** Entries in the dynamic table. */
  get tableLength(): number {
    return this.#dyn.length / 2;
  }

  /** Octets the dynamic table accounts for (RFC 7541 4.1). */
  get tableSize(): number {
    return this.#size;
  }

  /**
   * Decodes one complete header block into a flat [name, value, name, value,
   * ...] list. Past `maxListSize` octets of decoded list (RFC 9113 6.5.2:
   * name + value + 32 per field) it throws {@link HeaderListTooLarge}.
   */
  decode(block: Uint8Array, maxListSize = Infinity): string[] {
    const out: string[] = [];
    const r = { pos: 0 };
    let fieldSeen = false;
    let listSize = 0;
    while (r.pos < block.length) {
      const b = block[r.pos];
      if (b & 0x80) {
        // Indexed field.
        const idx = readInt(block, r, 7);
        if (idx === 0) throw new HpackError("index 0");
        this.#push(out, idx);
        listSize = countField(out, listSize, maxListSize);
        fieldSeen = true;
      } else if (b & 0x40) {
        // Literal with incremental indexing.
        const [name, value] = this.#literal(block, r, 6);
        out.push(name, value);
        listSize = countField(out, listSize, maxListSize);
        this.#add(name, value);
        fieldSeen = true;
      } else if (b & 0x20) {
        // Dynamic table size update: only before the first field.
        if (fieldSeen) throw new HpackError("table size update after a header field");
        const size = readInt(block, r, 5);
        if (size > this.#limit) {
          throw new HpackError(`table size update to ${size} over the limit ${this.#limit}`);
        }
        this.#max = size;
        this.#evict(0);
      } else {
        // Literal without indexing (0000) or never indexed (0001).
        const [name, value] = this.#literal(block, r, 4);
        out.push(name, value);
        listSize = countField(out, listSize, maxListSize);
        fieldSeen = true;
      }
    }
    return out;
  }

  #literal(block: Uint8Array, r: { pos: number }, prefix: number): [string, string] {
    const idx = readInt(block, r, prefix);
    const name = idx === 0 ? readString(block, r) : this.#name(idx);
    return [name, readString(block, r)];
  }

  #name(idx: number): string {
    if (idx <= STATIC_TABLE.length) return STATIC_TABLE[idx - 1][0];
    const at = this.#dyn.length - 2 * (idx - STATIC_TABLE.length);
    if (at < 0) throw new HpackError(`index ${idx} out of range`);
    return this.#dyn[at];
  }

  #push(out: string[], idx: number): void {
    if (idx <= STATIC_TABLE.length) {
      const e = STATIC_TABLE[idx - 1];
      out.push(e[0], e[1]);
      return;
    }
    const at = this.#dyn.length - 2 * (idx - STATIC_TABLE.length);
    if (at < 0) throw new HpackError(`index ${idx} out of range`);
    out.push(this.#dyn[at], this.#dyn[at + 1]);
  }

  #add(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.#max) {
      // Too big for the table: it empties the table and is not added (4.4).
      this.#dyn = [];
      this.#size = 0;
      return;
    }
    this.#evict(size);
    this.#dyn.push(name, value);
    this.#size += size;
  }

  // Evicts the oldest entries until `room` more octets fit.
  #evict(room: number): void {
    let drop = 0;
    while (this.#size + room > this.#max && drop < this.#dyn.length) {
      this.#size -= this.#dyn[drop].length + this.#dyn[drop + 1].length + ENTRY_OVERHEAD;
      drop += 2;
    }
    if (drop > 0) this.#dyn.splice(0, drop);
  }
}

// Integers use up to 2^32-ish here; longer encodings are refused rather than
// silently losing precision.
function readInt(block: Uint8Array, r: { pos: number }, prefix: number): number {
  const mask = (1 << prefix) - 1;
  let v = block[r.pos++] & mask;
  if (v < mask) return v;
  let shift = 0;
  for (;;) {
    if (r.pos >= block.length) throw new HpackError("truncated integer");
    const b = block[r.pos++];
    v += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if ((b & 0x80) === 0) break;
    if (shift > 28) throw new HpackError("integer too large");
  }
  return v;
}

function readString(block: Uint8Array, r: { pos: number }): string {
  if (r.pos >= block.length) throw new HpackError("truncated string");
  const huff = (block[r.pos] & 0x80) !== 0;
  const len = readInt(block, r, 7);
  if (r.pos + len > block.length) throw new HpackError("string runs past the block");
  const from = r.pos;
  r.pos += len;
  return huff ? huffmanDecode(block.subarray(from, from + len)) : octets(block, from, from + len);
}

/**
 * Appends an integer with a `prefix`-bit prefix to `out`; `first` holds the
 * representation's leading bits.
 */
export function writeInt(out: number[], first: number, prefix: number, v: number): void {
  const mask = (1 << prefix) - 1;
  if (v < mask) {
    out.push(first | v);
    return;
  }
  out.push(first | mask);
  v -= mask;
  while (v >= 0x80) {
    out.push((v % 0x80) | 0x80);
    v = Math.floor(v / 0x80);
  }
  out.push(v);
}

function writeString(out: number[], s: string): void {
  writeInt(out, 0, 7, s.length);
  for (let i = 0; i < s.length; i++) out.push(s.charCodeAt(i) & 0xff);
}

// Static names we send often, by index.
const STATIC_NAME = new Map<string, number>();
const STATIC_PAIR = new Map<string, number>();
STATIC_TABLE.forEach(([n, v], i) => {
  if (!STATIC_NAME.has(n)) STATIC_NAME.set(n, i + 1);
  if (v !== "") STATIC_PAIR.set(`${n}\0${v}`, i + 1);
});

/**
 * Encodes a header block from a flat [name, value, ...] list without using
 * the dynamic table: fully indexed static entries where they exist, else
 * literals without indexing (static name index where there is one). With
 * `sizeUpdate`, the block starts with a table size update to 0 (needed
 * once after the peer changes its SETTINGS_HEADER_TABLE_SIZE). Names and
 * values are latin1 strings (ASCII in practice).
 */
export function encodeHeaders(fields: readonly string[], sizeUpdate = false): Uint8Array {
  const out: number[] = [];
  if (sizeUpdate) out.push(0x20);
  for (let i = 0; i < fields.length; i += 2) {
    const name = fields[i];
    const value = fields[i + 1];
    const pair = STATIC_PAIR.get(`${name}\0${value}`);
    if (pair !== undefined) {
      writeInt(out, 0x80, 7, pair);
      continue;
    }
    const idx = STATIC_NAME.get(name);
    if (idx !== undefined) writeInt(out, 0, 4, idx);
    else {
      out.push(0);
      writeString(out, name);
    }
    writeString(out, value);
  }
  return Uint8Array.from(out);
}
