import assert from "node:assert/strict";
import {
  encodeHeaders,
  HeaderListTooLarge,
  HpackDecoder,
  HpackError,
  huffmanDecode,
  huffmanEncode,
} from "./hpack.ts";

// Test vectors of RFC 7541 Appendix C.
const hex = (s: string) =>
  Uint8Array.from(s.replace(/\s+/g, "").match(/../g)!.map((b) => parseInt(b, 16)));
const pairs = (f: string[]) => f.flatMap((x, i) => i % 2 === 0 ? [`${x}: ${f[i + 1]}`] : []);

const REQ1 = [":method", "GET", ":scheme", "http", ":path", "/", ":authority", "www.example.com"];
const REQ2 = [...REQ1, "cache-control", "no-cache"];
const REQ3 = [
  ":method",
  "GET",
  ":scheme",
  "https",
  ":path",
  "/index.html",
  ":authority",
  "www.example.com",
  "custom-key",
  "custom-value",
];

function series(size: number, steps: Array<[string, string[], number, number]>): void {
  const d = new HpackDecoder(size);
  for (const [block, want, entries, tableSize] of steps) {
    assert.deepEqual(pairs(d.decode(hex(block))), pairs(want));
    assert.equal(d.tableLength, entries);
    assert.equal(d.tableSize, tableSize);
  }
}

Deno.test("hpack: RFC 7541 C.3 requests without Huffman share one dynamic table", () => {
  series(4096, [
    ["8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", REQ1, 1, 57],
    ["8286 84be 5808 6e6f 2d63 6163 6865", REQ2, 2, 110],
    ["8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", REQ3, 3, 164],
  ]);
});

Deno.test("hpack: RFC 7541 C.4 requests with Huffman", () => {
  series(4096, [
    ["8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", REQ1, 1, 57],
    ["8286 84be 5886 a8eb 1064 9cbf", REQ2, 2, 110],
    ["8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", REQ3, 3, 164],
  ]);
});

const RESP1 = [
  ":status",
  "302",
  "cache-control",
  "private",
  "date",
  "Mon, 21 Oct 2013 20:13:21 GMT",
  "location",
  "https://www.example.com",
];
const RESP2 = [...RESP1];
RESP2[1] = "307";
const RESP3 = [
  ":status",
  "200",
  "cache-control",
  "private",
  "date",
  "Mon, 21 Oct 2013 20:13:22 GMT",
  "location",
  "https://www.example.com",
  "content-encoding",
  "gzip",
  "set-cookie",
  "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
];

Deno.test("hpack: RFC 7541 C.5/C.6 responses evict from a 256-octet table", () => {
  series(256, [
    [
      `4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
       2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
       6c65 2e63 6f6d`,
      RESP1,
      4,
      222,
    ],
    // ":status: 307" goes in, ":status: 302" is evicted.
    ["4803 3330 37c1 c0bf", RESP2, 4, 222],
    [
      `88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
       54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
       5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
       3d31`,
      RESP3,
      3,
      215,
    ],
  ]);
  series(256, [
    [
      `4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
       2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3`,
      RESP1,
      4,
      222,
    ],
    ["4883 640e ffc1 c0bf", RESP2, 4, 222],
    [
      `88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
       77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
       9587 3160 65c0 03ed 4ee5 b106 3d50 07`,
      RESP3,
      3,
      215,
    ],
  ]);
});

Deno.test("hpack: table size updates evict, and are refused over the limit or after a field", () => {
  const d = new HpackDecoder(4096);
  d.decode(hex("8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d"));
  assert.equal(d.tableLength, 1);
  // Size update to 0 then back to 4096, then a field: the table is empty.
  assert.deepEqual(d.decode(hex("20 3fe1 1f 82")), [":method", "GET"]);
  assert.equal(d.tableLength, 0);
  assert.throws(() => d.decode(hex("be")), HpackError); // index 62 no longer exists
  assert.throws(() => d.decode(hex("3fe2 1f")), HpackError); // 4097 > 4096
  assert.throws(() => d.decode(hex("82 20")), HpackError); // update after a field
  assert.throws(() => d.decode(hex("80")), HpackError); // index 0
  assert.throws(() => d.decode(hex("0f")), HpackError); // truncated integer
  assert.throws(() => d.decode(hex("00 05 61")), HpackError); // string runs past the block
  // An entry larger than the whole table empties it and is not added.
  const small = new HpackDecoder(40);
  small.decode(hex("40 01 61 01 62")); // a: b (34 octets)
  assert.equal(small.tableLength, 1);
  small.decode(hex("40 01 63 0a 30313233343536373839")); // c: 0123456789 (43 octets)
  assert.equal(small.tableLength, 0);
  assert.equal(small.tableSize, 0);
});

Deno.test("hpack: Huffman round-trips every octet and refuses bad padding and EOS", () => {
  let all = "";
  for (let i = 0; i < 256; i++) all += String.fromCharCode(i);
  assert.equal(huffmanDecode(huffmanEncode(all)), all);
  assert.equal(huffmanDecode(huffmanEncode("application/grpc")), "application/grpc");
  assert.deepEqual(huffmanEncode("www.example.com"), hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff"));
  // 8 bits of padding (a whole 0xff byte) is too long; zero bits are not padding.
  assert.throws(() => huffmanDecode(hex("f1e3 c2e5 f23a 6ba0 ab90 f4ff ff")), HpackError);
  assert.throws(() => huffmanDecode(hex("00")), HpackError); // "00000" is '0', then 000 padding
  assert.throws(() => huffmanDecode(hex("ffff ffff")), HpackError); // EOS (30 ones)
});

Deno.test("hpack: what the encoder writes decodes back, with a size update when asked", () => {
  const fields = [
    ":status",
    "200",
    "content-type",
    "application/grpc",
    "grpc-status",
    "13",
    "grpc-message",
    "x".repeat(300),
  ];
  const block = encodeHeaders(fields);
  assert.equal(block[0], 0x88); // :status 200 is fully indexed
  assert.deepEqual(new HpackDecoder().decode(block), fields);
  const d = new HpackDecoder();
  const upd = encodeHeaders(fields, true);
  assert.equal(upd[0], 0x20);
  assert.deepEqual(d.decode(upd), fields);
  assert.equal(d.tableLength, 0);
});

Deno.test("hpack: decoding stops once the header list passes the limit", () => {
  // One 100-byte value in the table, then referenced: each reference is one
  // byte on the wire and 105 + 32 octets of list.
  const block = new Uint8Array([
    0x40,
    1,
    0x78,
    100,
    ...new Uint8Array(100).fill(0x61), // "x": "aaa...", indexed
    ...new Uint8Array(20).fill(0x80 | 62),
  ]);
  assert.equal(new HpackDecoder().decode(block).length, 42);
  assert.throws(() => new HpackDecoder().decode(block, 1000), HeaderListTooLarge);
  // Exactly at the limit is fine: 21 fields of 1 + 100 + 32.
  assert.equal(new HpackDecoder().decode(block, 21 * 133).length, 42);
});
