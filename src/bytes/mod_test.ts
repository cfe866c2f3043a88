import assert from "node:assert/strict";
import { concatBytes, putUint32 } from "./mod.ts";

Deno.test("bytes: concatBytes joins in order, empty parts included", () => {
  assert.deepEqual(
    concatBytes(new Uint8Array([1, 2]), new Uint8Array(0), new Uint8Array([3])),
    new Uint8Array([1, 2, 3]),
  );
});

Deno.test("bytes: putUint32 writes big-endian at the offset and nothing else", () => {
  const b = new Uint8Array(7).fill(0xee);
  putUint32(b, 2, 0x8a0b0c0d);
  assert.deepEqual(b, new Uint8Array([0xee, 0xee, 0x8a, 0x0b, 0x0c, 0x0d, 0xee]));
  putUint32(b, 0, 0xffffffff);
  assert.deepEqual(b.subarray(0, 4), new Uint8Array([0xff, 0xff, 0xff, 0xff]));
});
