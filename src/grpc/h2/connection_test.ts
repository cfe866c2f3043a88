// Frame-level tests of the HTTP/2 server, through GrpcServer and a raw
// client written here (so that bad input can be sent on purpose).
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Echo, EchoRequestSchema } from "../../gen/berth/testing/v1/echo_pb.ts";
import { frameMessage } from "../framing.ts";
import { echoImpl, type Observed } from "../../ttrpc/fixture_test.ts";
import { GrpcServer } from "../server.ts";
import { ErrorCode, Flags, FrameType, PREFACE, Setting } from "./frame.ts";
import { encodeHeaders, HpackDecoder } from "./hpack.ts";

interface Frame {
  type: number;
  flags: number;
  id: number;
  payload: Uint8Array;
}

function frame(
  type: number,
  flags: number,
  id: number,
  payload: ArrayLike<number> = [],
): Uint8Array {
  const out = new Uint8Array(9 + payload.length);
  out[0] = payload.length >>> 16;
  out[1] = payload.length >>> 8;
  out[2] = payload.length;
  out[3] = type;
  out[4] = flags;
  new DataView(out.buffer).setUint32(5, id);
  out.set(payload, 9);
  return out;
}

const u32 = (v: number) => [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
const setting = (id: number, v: number) => [id >>> 8, id & 0xff, ...u32(v)];
const readU32 = (b: Uint8Array, o = 0) => new DataView(b.buffer, b.byteOffset).getUint32(o);

/** A raw HTTP/2 client connection. */
class Raw {
  #buf = new Uint8Array(0);
  decoder = new HpackDecoder();
  constructor(readonly conn: Deno.UnixConn) {}

  static async open(path: string, settings: number[] = []): Promise<Raw> {
    const r = new Raw(await Deno.connect({ transport: "unix", path }));
    await r.send(PREFACE, frame(FrameType.SETTINGS, 0, 0, settings));
    return r;
  }

  async send(...parts: Uint8Array[]): Promise<void> {
    for (const p of parts) {
      let off = 0;
      while (off < p.length) off += await this.conn.write(p.subarray(off));
    }
  }

  /** The next frame, or null at end of connection. */
  async next(): Promise<Frame | null> {
    for (;;) {
      if (this.#buf.length >= 9) {
        const len = (this.#buf[0] << 16) | (this.#buf[1] << 8) | this.#buf[2];
        if (this.#buf.length >= 9 + len) {
          const f = {
            type: this.#buf[3],
            flags: this.#buf[4],
            id: readU32(this.#buf, 5) & 0x7fffffff,
            payload: this.#buf.slice(9, 9 + len),
          };
          this.#buf = this.#buf.slice(9 + len);
          return f;
        }
      }
      const chunk = new Uint8Array(65536);
      let n: number | null;
      try {
        n = await this.conn.read(chunk);
      } catch {
        n = null;
      }
      if (n === null) return null;
      const joined = new Uint8Array(this.#buf.length + n);
      joined.set(this.#buf);
      joined.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = joined;
    }
  }

  /** Frames until one matches `pred` (which is returned); null if the connection ends first. */
  async until(pred: (f: Frame) => boolean, seen: Frame[] = []): Promise<Frame | null> {
    for (;;) {
      const f = await this.next();
      if (f === null || pred(f)) return f;
      seen.push(f);
    }
  }

  close(): void {
    try {
      this.conn.close();
    } catch { /* closed */ }
  }
}

function request(path: string, extra: string[] = []): Uint8Array {
  return encodeHeaders([
    ":method",
    "POST",
    ":scheme",
    "http",
    ":path",
    path,
    ":authority",
    "localhost",
    "content-type",
    "application/grpc",
    "te",
    "trailers",
    ...extra,
  ]);
}

// An EchoRequest framed as a gRPC message, with a blob of `blob` bytes.
function sayMessage(text: string, blob = 0): Uint8Array {
  return frameMessage(
    toBinary(EchoRequestSchema, create(EchoRequestSchema, { text, blob: new Uint8Array(blob) })),
  );
}

async function withServer(fn: (path: string, server: GrpcServer, o: Observed) => Promise<void>) {
  const dir = await Deno.makeTempDir({ prefix: "berth-h2-" });
  const path = `${dir}/s.sock`;
  const observed: Observed = { aborted: [], finished: [] };
  const server = new GrpcServer();
  server.register(Echo, echoImpl(observed));
  await server.listen(path);
  try {
    await fn(path, server, observed);
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
}

// A call on a fresh connection still works (the server was not hurt).
async function stillServes(path: string): Promise<void> {
  const r = await Raw.open(path);
  try {
    await r.send(
      frame(FrameType.HEADERS, Flags.END_HEADERS, 1, request("/berth.testing.v1.Echo/Say")),
      frame(FrameType.DATA, Flags.END_STREAM, 1, sayMessage("ok")),
    );
    const end = await r.until((f) =>
      f.type === FrameType.HEADERS && (f.flags & Flags.END_STREAM) !== 0
    );
    assert.ok(end !== null);
  } finally {
    r.close();
  }
}

Deno.test("h2: the server's preface, PING answered, SETTINGS acknowledged", async () => {
  await withServer(async (path) => {
    const r = await Raw.open(path);
    try {
      const settings = await r.next();
      assert.equal(settings?.type, FrameType.SETTINGS);
      const values = new Map<number, number>();
      for (let o = 0; o < settings!.payload.length; o += 6) {
        values.set(
          (settings!.payload[o] << 8) | settings!.payload[o + 1],
          readU32(settings!.payload, o + 2),
        );
      }
      assert.ok(values.get(Setting.INITIAL_WINDOW_SIZE)! >= 1 << 20);
      assert.ok(values.get(Setting.MAX_CONCURRENT_STREAMS)! >= 200);
      const wu = await r.next();
      assert.equal(wu?.type, FrameType.WINDOW_UPDATE);
      assert.equal(wu?.id, 0);
      await r.send(frame(FrameType.PING, 0, 0, [1, 2, 3, 4, 5, 6, 7, 8]));
      const seen: Frame[] = [];
      const pong = await r.until((f) => f.type === FrameType.PING, seen);
      assert.equal(pong?.flags, Flags.ACK);
      assert.deepEqual([...pong!.payload], [1, 2, 3, 4, 5, 6, 7, 8]);
      assert.ok(seen.some((f) => f.type === FrameType.SETTINGS && f.flags === Flags.ACK));
    } finally {
      r.close();
    }
  });
});

Deno.test("h2: a bad preface or a bad frame ends only that connection, with GOAWAY", async () => {
  await withServer(async (path) => {
    const cases: Array<[string, Uint8Array[], number]> = [
      [
        "preface",
        [new TextEncoder().encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n")],
        ErrorCode.PROTOCOL_ERROR,
      ],
      ["DATA on stream 0", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.DATA, 0, 0, [1]),
      ], ErrorCode.PROTOCOL_ERROR],
      [
        "no SETTINGS first",
        [PREFACE, frame(FrameType.PING, 0, 0, [0, 0, 0, 0, 0, 0, 0, 0])],
        ErrorCode.PROTOCOL_ERROR,
      ],
      ["oversized frame", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.PING, 0, 0, new Uint8Array(20000)),
      ], ErrorCode.FRAME_SIZE_ERROR],
      ["even stream id", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.HEADERS, Flags.END_HEADERS, 2, request("/x/y")),
      ], ErrorCode.PROTOCOL_ERROR],
      ["bad HPACK", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.HEADERS, Flags.END_HEADERS, 1, [0xff]),
      ], ErrorCode.COMPRESSION_ERROR],
      ["interrupted header block", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.HEADERS, 0, 1, request("/x/y")),
        frame(FrameType.PING, 0, 0, new Uint8Array(8)),
      ], ErrorCode.PROTOCOL_ERROR],
      ["WINDOW_UPDATE of 0", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.WINDOW_UPDATE, 0, 0, u32(0)),
      ], ErrorCode.PROTOCOL_ERROR],
    ];
    for (const [what, bytes, code] of cases) {
      const r = new Raw(await Deno.connect({ transport: "unix", path }));
      try {
        await r.send(...bytes);
        const goaway = await r.until((f) => f.type === FrameType.GOAWAY);
        assert.ok(goaway !== null, what);
        assert.equal(readU32(goaway.payload, 4), code, what);
        assert.equal(await r.until(() => false), null, `${what}: the connection closes`);
      } finally {
        r.close();
      }
      await stillServes(path);
    }
  });
});

Deno.test("h2: a malformed request is a stream error; the connection goes on", async () => {
  await withServer(async (path) => {
    const r = await Raw.open(path);
    try {
      const upper = encodeHeaders([
        ":method",
        "POST",
        ":scheme",
        "http",
        ":path",
        "/a/b",
        "X-Up",
        "1",
      ]);
      await r.send(frame(FrameType.HEADERS, Flags.END_HEADERS | Flags.END_STREAM, 1, upper));
      const rst = await r.until((f) => f.type === FrameType.RST_STREAM);
      assert.equal(rst?.id, 1);
      assert.equal(readU32(rst!.payload), ErrorCode.PROTOCOL_ERROR);
      // The same connection still serves a call (padded DATA, HEADERS with priority).
      const block = request("/berth.testing.v1.Echo/Say");
      const prio = Uint8Array.from([0, 0, 0, 0, 16, ...block]);
      const msg = sayMessage("padded");
      await r.send(
        frame(FrameType.HEADERS, Flags.END_HEADERS | Flags.PRIORITY, 3, prio),
        frame(FrameType.DATA, Flags.END_STREAM | Flags.PADDED, 3, [4, ...msg, 0, 0, 0, 0]),
      );
      const got: Frame[] = [];
      const end = await r.until((f) => f.id === 3 && (f.flags & Flags.END_STREAM) !== 0, got);
      assert.ok(end !== null);
      const status = r.decoder.decode(
        got.find((f) => f.type === FrameType.HEADERS && f.id === 3)!.payload,
      );
      assert.deepEqual(status.slice(0, 2), [":status", "200"]);
      const trailers = r.decoder.decode(end.payload);
      assert.deepEqual(trailers, ["grpc-status", "0"]);
      const data = got.filter((f) => f.type === FrameType.DATA && f.id === 3);
      assert.ok(new TextDecoder().decode(data[0].payload).includes("padded"));
    } finally {
      r.close();
    }
  });
});

Deno.test("h2: the server never sends past the client's windows, and resumes on WINDOW_UPDATE", async () => {
  await withServer(async (path) => {
    // Stream window 100 bytes; the connection window stays 65535.
    const r = await Raw.open(path, setting(Setting.INITIAL_WINDOW_SIZE, 100));
    try {
      await r.send(
        frame(FrameType.HEADERS, Flags.END_HEADERS, 1, request("/berth.testing.v1.Echo/Say")),
        frame(FrameType.DATA, Flags.END_STREAM, 1, sayMessage("w", 1000)),
      );
      let received = 0;
      const seen: Frame[] = [];
      // Until the first 100 bytes have come; then nothing more until we grant more.
      while (received < 100) {
        const f = await r.until((f) => f.type === FrameType.DATA && f.id === 1, seen);
        assert.ok(f !== null);
        received += f.payload.length;
      }
      assert.equal(received, 100);
      // A PING round trip: anything the server had to send is here by then.
      await r.send(frame(FrameType.PING, 0, 0, new Uint8Array(8)));
      const before: Frame[] = [];
      assert.ok(await r.until((f) => f.type === FrameType.PING, before) !== null);
      assert.ok(!before.some((f) => f.id === 1), "nothing more on the stream before WINDOW_UPDATE");
      await r.send(frame(FrameType.WINDOW_UPDATE, 0, 1, u32(10_000)));
      const trailers: Frame[] = [];
      const end = await r.until((f) => f.id === 1 && f.type === FrameType.HEADERS, trailers);
      assert.ok(end !== null && (end.flags & Flags.END_STREAM) !== 0);
      for (const f of trailers) {
        if (f.type === FrameType.DATA && f.id === 1) received += f.payload.length;
      }
      assert.ok(received > 1000, `${received} bytes`);
    } finally {
      r.close();
    }
  });
});
