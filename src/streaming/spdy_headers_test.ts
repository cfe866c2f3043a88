import assert from "node:assert/strict";
import zlib from "node:zlib";
import { Code, isCode } from "../errdefs/mod.ts";
import {
  decodeHeaderBlock,
  encodeHeaderBlock,
  HEADER_DICTIONARY,
  HeaderCodec,
  type HeaderMap,
} from "./spdy_headers.ts";

/** Adler-32 (what zlib names a preset dictionary by). */
function adler32(b: Uint8Array): number {
  let a = 1, s = 0;
  for (const x of b) {
    a = (a + x) % 65521;
    s = (s + a) % 65521;
  }
  return ((s << 16) | a) >>> 0;
}

Deno.test("spdy headers: the dictionary is SPDY/3's (length and zlib dictionary id)", () => {
  assert.equal(HEADER_DICTIONARY.length, 1423);
  // 0xe3c6a7c2 is the DICTID of SPDY/3's dictionary in every SPDY/3 header stream.
  assert.equal(adler32(HEADER_DICTIONARY), 0xe3c6a7c2);
});

Deno.test("spdy headers: block layout, lower-case names, NUL-joined values", () => {
  const block = encodeHeaderBlock(new Map([["StreamType", ["error"]], ["x", ["a", "b"]]]));
  const expect = [
    0,
    0,
    0,
    2,
    0,
    0,
    0,
    10,
    ..."streamtype".split("").map((c) => c.charCodeAt(0)),
    0,
    0,
    0,
    5,
    ..."error".split("").map((c) => c.charCodeAt(0)),
    0,
    0,
    0,
    1,
    0x78,
    0,
    0,
    0,
    3,
    0x61,
    0,
    0x62,
  ]; // deno-fmt-ignore
  assert.deepEqual(Array.from(block), expect);
  assert.deepEqual(
    decodeHeaderBlock(block),
    new Map([["streamtype", ["error"]], ["x", ["a", "b"]]]),
  );
  for (const bad of [block.subarray(0, 9), new Uint8Array([...block, 0]), new Uint8Array([0, 0])]) {
    assert.throws(() => decodeHeaderBlock(bad), (e) => isCode(e, Code.InvalidArgument));
  }
});

Deno.test("spdy headers: compression keeps one context per direction across blocks", () => {
  const a = new HeaderCodec();
  const b = new HeaderCodec();
  const blocks: HeaderMap[] = [
    new Map([["streamtype", ["error"]], ["port", ["8080"]], ["requestid", ["0"]]]),
    new Map([["streamtype", ["data"]], ["port", ["8080"]], ["requestid", ["0"]]]),
    new Map(),
    new Map([["big", ["v".repeat(70000)]]]),
  ];
  const wire = [];
  for (const h of blocks) wire.push(a.compress(h));
  // The second block leans on the first: alone it is not decodable.
  assert.ok(wire[1].length < wire[0].length);
  for (let i = 0; i < blocks.length; i++) {
    assert.deepEqual(b.decompress(wire[i]), blocks[i]);
  }
  // The stream starts with a zlib header naming the dictionary (FDICT and its id).
  assert.equal(wire[0][0], 0x78);
  assert.ok(wire[0][1] & 0x20);
  assert.equal(new DataView(wire[0].buffer, wire[0].byteOffset).getUint32(2), 0xe3c6a7c2);
  // zlib alone, with the same dictionary, reads the same stream.
  const whole = new Uint8Array(wire.slice(0, 2).reduce((n, w) => n + w.length, 0));
  whole.set(wire[0]);
  whole.set(wire[1], wire[0].length);
  const inflated = zlib.inflateSync(whole, {
    dictionary: HEADER_DICTIONARY,
    finishFlush: zlib.constants.Z_SYNC_FLUSH,
  });
  assert.equal(
    inflated.length,
    encodeHeaderBlock(blocks[0]).length + encodeHeaderBlock(blocks[1]).length,
  );
});

Deno.test("spdy headers: a corrupt compressed block is InvalidArgument, and so is what follows", () => {
  const c = new HeaderCodec();
  const bad = new Uint8Array([0x78, 0xbb, 0xe3, 0xc6, 0xa7, 0xc2, 0xff, 0xff, 0xff, 0xff]);
  assert.throws(() => c.decompress(bad), (e) => isCode(e, Code.InvalidArgument));
  const good = new HeaderCodec().compress(new Map());
  assert.throws(() => c.decompress(good), (e) => isCode(e, Code.InvalidArgument));
});
