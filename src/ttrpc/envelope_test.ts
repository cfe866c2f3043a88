import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { StatusSchema } from "../gen/google/rpc/status_pb.ts";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.ts";
import type { ByteSink } from "../rpc/mod.ts";
import { FrameWriter, HEADER_LENGTH } from "./channel.ts";
import {
  decodeRequest,
  decodeResponse,
  encodeMetadata,
  EnvelopeError,
  requestPrefix,
  responseLength,
  utf8Length,
  writeRequest,
  writeResponse,
} from "./envelope.ts";

/** Captures the payload of the single frame a write call produces. */
async function framed(fn: (w: FrameWriter) => void): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  const sink: ByteSink = { write: (p) => (chunks.push(p.slice()), Promise.resolve(p.length)) };
  const w = new FrameWriter(sink);
  fn(w);
  await w.drained();
  return chunks[0].subarray(HEADER_LENGTH);
}

const cases = [
  {
    service: "containerd.task.v2.Task",
    method: "State",
    payload: new Uint8Array([10, 1, 120]),
    timeout: 0,
    md: [],
  },
  {
    service: "s",
    method: "m",
    payload: new Uint8Array(300).fill(1),
    timeout: 5_000_000_000,
    md: [["containerd-namespace-ttrpc", "default"], ["k", ""], ["", "v"], ["ünï", "☃💡"]],
  },
  {
    service: "ü💡",
    method: "",
    payload: new Uint8Array(0),
    timeout: 1,
    md: [["a", "1"], ["a", "2"]],
  },
] as const;

Deno.test("requests encode exactly as the generated codec does", async () => {
  for (const c of cases) {
    const md = c.md.map(([key, value]) => ({ key, value }));
    const want = toBinary(
      RequestSchema,
      create(RequestSchema, {
        service: c.service,
        method: c.method,
        payload: c.payload,
        timeoutNano: BigInt(c.timeout),
        metadata: md,
      }),
    );
    const mdBytes = c.md.length ? encodeMetadata(c.md.map(([k, v]) => [k, v])) : undefined;
    const got = await framed((w) =>
      writeRequest(w, 1, 0, requestPrefix(c.service, c.method), c.payload, c.timeout, mdBytes)
    );
    assert.deepEqual(got, want);
    const back = decodeRequest(want);
    assert.equal(back.service, c.service);
    assert.equal(back.method, c.method);
    assert.deepEqual(back.payload ?? new Uint8Array(0), c.payload);
    assert.equal(back.timeoutNano, c.timeout);
    assert.deepEqual(back.metadata ?? [], c.md.map(([k, v]) => [k, v]));
  }
});

Deno.test("request decoding: absent payload, negative timeout, unknown fields", () => {
  const bytes = toBinary(
    RequestSchema,
    create(RequestSchema, { service: "a", method: "b", timeoutNano: -5n }),
  );
  const withUnknown = new Uint8Array([...bytes, 0x30, 0x96, 0x01, 0x3d, 1, 2, 3, 4, 0x42, 2, 9, 9]);
  const r = decodeRequest(withUnknown);
  assert.equal(r.payload, undefined);
  assert.equal(r.timeoutNano, -5);
  assert.equal(r.service, "a");
  const big = decodeRequest(
    toBinary(RequestSchema, create(RequestSchema, { timeoutNano: 2n ** 52n + 3n })),
  );
  assert.equal(big.timeoutNano, 2 ** 52 + 3);
});

Deno.test("malformed request bytes are an EnvelopeError", () => {
  for (
    const bad of [
      [0x0a, 5, 1], // string overruns
      [0x0a], // missing length
      [0x20, 0x80], // truncated varint
      [0x03], // group wire type
      [0x00, 1], // field 0
      [0x25, 1, 2], // fixed32 cut short
      [0x2a, 3, 0x0a, 9, 1], // metadata key overruns
      [0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01], // 11-byte varint
    ]
  ) {
    assert.throws(() => decodeRequest(new Uint8Array(bad)), EnvelopeError, JSON.stringify(bad));
  }
});

Deno.test("responses encode as the generated codec does, OK status included", async () => {
  for (
    const [code, message, payload] of [
      [0, "", new Uint8Array([8, 1])],
      [0, "", new Uint8Array(0)],
      [5, 'container "x": not found', new Uint8Array(0)],
      [13, "ünïcode ☃", new Uint8Array(200).fill(3)],
    ] as const
  ) {
    const want = toBinary(
      ResponseSchema,
      create(ResponseSchema, { status: create(StatusSchema, { code, message }), payload }),
    );
    const got = await framed((w) => writeResponse(w, 1, code, message, payload));
    assert.deepEqual(got, want);
    assert.equal(responseLength(code, message, payload.length), want.length);
    const back = decodeResponse(want);
    assert.deepEqual([back.code, back.message, back.payload], [code, message, payload]);
  }
});

Deno.test("response decoding skips status details and tolerates an absent status", () => {
  const detail = anyPack(StatusSchema, create(StatusSchema, { code: 1 }));
  const bytes = toBinary(
    ResponseSchema,
    create(ResponseSchema, {
      status: create(StatusSchema, { code: 9, message: "busy", details: [detail] }),
      payload: new Uint8Array([1]),
    }),
  );
  assert.deepEqual(decodeResponse(bytes), {
    code: 9,
    message: "busy",
    payload: new Uint8Array([1]),
  });
  assert.deepEqual(decodeResponse(new Uint8Array(0)), {
    code: 0,
    message: "",
    payload: new Uint8Array(0),
  });
  const parsed = fromBinary(ResponseSchema, bytes);
  assert.equal(parsed.status?.code, 9);
  assert.throws(() => decodeResponse(new Uint8Array([0x12, 9])), EnvelopeError);
});

Deno.test("utf8Length agrees with TextEncoder", () => {
  for (const s of ["", "abc", "é", "☃", "💡", "a💡b☃c", "\ud800x", "x\udc00"]) {
    assert.equal(utf8Length(s), new TextEncoder().encode(s).length, s);
  }
});
