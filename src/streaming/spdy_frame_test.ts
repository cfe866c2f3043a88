import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { encodeFrame, type Frame, FrameDecoder, RstStatus } from "./spdy_frame.ts";

const hex = (b: Uint8Array) => Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("spdy frames: wire bytes of control and data frames", () => {
  // A PING with id 7: control bit, version 3, type 6, no flags, length 4.
  assert.equal(hex(encodeFrame({ type: "ping", id: 7 })), "80030006000000040000" + "0007");
  // DATA on stream 5 with FIN and two bytes.
  assert.equal(
    hex(encodeFrame({ type: "data", streamId: 5, flags: 1, data: new Uint8Array([0xab, 0xcd]) })),
    "0000000501000002abcd",
  );
  // RST_STREAM of stream 3 with CANCEL.
  assert.equal(
    hex(encodeFrame({ type: "rst_stream", streamId: 3, status: RstStatus.Cancel })),
    "80030003000000080000000300000005",
  );
  // SYN_STREAM: stream 1, no associated stream, priority 2, FIN, header block "xy".
  assert.equal(
    hex(encodeFrame({
      type: "syn_stream",
      streamId: 1,
      associatedId: 0,
      priority: 2,
      flags: 1,
      headerBlock: new Uint8Array([0x78, 0x79]),
    })),
    "800300010100000c" + "00000001" + "00000000" + "4000" + "7879",
  );
});

Deno.test("spdy frames: every type round-trips through the decoder, byte by byte", () => {
  const frames: Frame[] = [
    { type: "data", streamId: 9, flags: 0, data: new TextEncoder().encode("hello") },
    {
      type: "syn_stream",
      streamId: 11,
      associatedId: 3,
      priority: 7,
      flags: 2,
      headerBlock: new Uint8Array([1, 2, 3]),
    },
    { type: "syn_reply", streamId: 11, flags: 1, headerBlock: new Uint8Array([4]) },
    { type: "rst_stream", streamId: 11, status: RstStatus.RefusedStream },
    {
      type: "settings",
      flags: 1,
      entries: [{ flags: 1, id: 7, value: 65536 }, { flags: 0, id: 4, value: 100 }],
    },
    { type: "ping", id: 0xfffffffe },
    { type: "goaway", lastGoodStreamId: 13, status: 1 },
    { type: "headers", streamId: 13, flags: 0, headerBlock: new Uint8Array(0) },
    { type: "window_update", streamId: 13, delta: 0x7fffffff },
    { type: "unknown", frameType: 0x77, flags: 0, payload: new Uint8Array([9]) },
  ];
  const bytes = frames.map(encodeFrame);
  const all = new Uint8Array(bytes.reduce((n, b) => n + b.length, 0));
  let off = 0;
  for (const b of bytes) {
    all.set(b, off);
    off += b.length;
  }
  const d = new FrameDecoder();
  const got: Frame[] = [];
  for (const byte of all) {
    d.push(new Uint8Array([byte]));
    for (let f = d.next(); f; f = d.next()) got.push(f);
  }
  assert.deepEqual(got, frames);
  assert.equal(d.pending, 0);
});

Deno.test("spdy frames: malformed input is refused with InvalidArgument", () => {
  const bad = (bytes: number[], max?: number) => {
    const d = new FrameDecoder(max);
    d.push(new Uint8Array(bytes));
    assert.throws(() => d.next(), (e) => isCode(e, Code.InvalidArgument));
  };
  bad([0x80, 0x02, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1]); // SPDY/2
  bad([0x80, 0x03, 0, 6, 0, 0, 0, 2, 0, 0]); // PING too short
  bad([0x80, 0x03, 0, 1, 0, 0, 0, 4, 0, 0, 0, 1]); // SYN_STREAM too short
  bad([0x80, 0x03, 0, 4, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0]); // SETTINGS count vs length
  bad([0, 0, 0, 1, 0, 0x10, 0, 0], 1024); // a DATA frame over the limit
});
