import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { acceptKey, encodeWsFrame, Opcode, WsFrameDecoder } from "./websocket.ts";

Deno.test("websocket: RFC 6455's handshake example", async () => {
  assert.equal(await acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

Deno.test("websocket: RFC 6455's framing examples decode and encode", () => {
  // Section 5.7: a single-frame masked text message "Hello".
  const masked = new Uint8Array([
    0x81,
    0x85,
    0x37,
    0xfa,
    0x21,
    0x3d,
    0x7f,
    0x9f,
    0x4d,
    0x51,
    0x58,
  ]);
  const d = new WsFrameDecoder(true);
  d.push(masked.subarray(0, 4));
  assert.equal(d.next(), undefined);
  d.push(masked.subarray(4));
  const f = d.next()!;
  assert.deepEqual(f, {
    fin: true,
    opcode: Opcode.Text,
    payload: new TextEncoder().encode("Hello"),
  });
  assert.deepEqual(encodeWsFrame(f, new Uint8Array([0x37, 0xfa, 0x21, 0x3d])), masked);
  // The unmasked form, as a server sends it.
  assert.deepEqual(
    Array.from(encodeWsFrame(f)),
    [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
  );
  // 256 bytes of binary: the 16-bit length form; 65536 bytes: the 64-bit form.
  const mid = encodeWsFrame({ fin: true, opcode: Opcode.Binary, payload: new Uint8Array(256) });
  assert.deepEqual(Array.from(mid.subarray(0, 4)), [0x82, 0x7e, 0x01, 0x00]);
  const big = encodeWsFrame({ fin: true, opcode: Opcode.Binary, payload: new Uint8Array(65536) });
  assert.deepEqual(Array.from(big.subarray(0, 10)), [0x82, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0]);
  const mask = new Uint8Array([1, 2, 3, 4]);
  for (const frame of [mid, big]) {
    const payload = frame.subarray(frame[1] === 0x7e ? 4 : 10);
    const rd = new WsFrameDecoder(true);
    rd.push(encodeWsFrame({ fin: true, opcode: Opcode.Binary, payload }, mask));
    assert.deepEqual(rd.next()?.payload, payload);
  }
});

Deno.test("websocket: protocol errors are InvalidArgument", () => {
  const bad = (bytes: number[]) => {
    const d = new WsFrameDecoder(true);
    d.push(new Uint8Array(bytes));
    assert.throws(() => d.next(), (e) => isCode(e, Code.InvalidArgument));
  };
  bad([0x82, 0x01, 0x00]); // unmasked client frame
  bad([0xc2, 0x80, 0, 0, 0, 0]); // RSV1 set
  bad([0x83, 0x80, 0, 0, 0, 0]); // opcode 3 is reserved
  bad([0x09, 0x80, 0, 0, 0, 0]); // fragmented ping
  bad([0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0]); // 256 MiB frame
});
