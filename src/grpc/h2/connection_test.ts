// Frame-level tests of the HTTP/2 server, through GrpcServer and a raw
// client written here (so that bad input can be sent on purpose).
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Echo, EchoRequestSchema } from "../../gen/berth/testing/v1/echo_pb.ts";
import { frameMessage } from "../framing.ts";
import { echoImpl, type Observed } from "../../ttrpc/fixture_test.ts";
import { GrpcServer, type GrpcServerOptions } from "../server.ts";
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

async function withServer(
  fn: (path: string, server: GrpcServer, o: Observed) => Promise<void>,
  opts: GrpcServerOptions = {},
) {
  const dir = await Deno.makeTempDir({ prefix: "berth-h2-" });
  const path = `${dir}/s.sock`;
  const observed: Observed = { aborted: [], finished: [] };
  const server = new GrpcServer(opts);
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
      // 4 KB put in the dynamic table once, then named by 1-byte references
      // until the decoded list passes the 1 MiB the server advertises.
      ["HPACK bomb", [
        PREFACE,
        frame(FrameType.SETTINGS, 0, 0),
        frame(FrameType.HEADERS, Flags.END_HEADERS, 1, [
          ...request("/x/y"),
          ...[0x40, 5, ...new TextEncoder().encode("x-big"), 0x7f, 0xa1, 0x1e],
          ...new Uint8Array(4000).fill(0x61),
          ...new Uint8Array(300).fill(0x80 | 62),
        ]),
      ], ErrorCode.ENHANCE_YOUR_CALM],
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

const PING = (data: number[]) => frame(FrameType.PING, 0, 0, data);
const isPingAck = (data: number[]) => (f: Frame) =>
  f.type === FrameType.PING && f.flags === Flags.ACK && f.payload[0] === data[0];

// A whole Echo/Say call on stream `id`: its frames up to the one that ends it.
async function call(r: Raw, id: number, text: string): Promise<Frame[]> {
  await r.send(
    frame(FrameType.HEADERS, Flags.END_HEADERS, id, request("/berth.testing.v1.Echo/Say")),
    frame(FrameType.DATA, Flags.END_STREAM, id, sayMessage(text)),
  );
  const seen: Frame[] = [];
  const end = await r.until((f) => f.id === id && (f.flags & Flags.END_STREAM) !== 0, seen);
  assert.ok(end !== null, `stream ${id} answered`);
  return [...seen, end];
}

Deno.test("h2: frames on a closed stream get RST_STREAM(STREAM_CLOSED), unless we reset it first", async () => {
  await withServer(async (path) => {
    const r = await Raw.open(path);
    try {
      await call(r, 1, "one");
      await call(r, 3, "three");
      // A malformed request: the server resets stream 5.
      const upper = encodeHeaders([
        ":method",
        "POST",
        ":scheme",
        "http",
        ":path",
        "/a/b",
        "X",
        "1",
      ]);
      await r.send(frame(FrameType.HEADERS, Flags.END_HEADERS, 5, upper));
      const rst5 = await r.until((f) => f.type === FrameType.RST_STREAM && f.id === 5);
      assert.equal(readU32(rst5!.payload), ErrorCode.PROTOCOL_ERROR);
      // DATA on stream 1 and HEADERS on stream 3 (both ended on both sides):
      // stream errors. DATA on stream 5 (which the server reset): ignored.
      // WINDOW_UPDATE and RST_STREAM on closed streams: ignored.
      await r.send(
        frame(FrameType.DATA, 0, 1, sayMessage("late")),
        frame(
          FrameType.HEADERS,
          Flags.END_HEADERS | Flags.END_STREAM,
          3,
          encodeHeaders(["x-trailer", "1"]),
        ),
        frame(FrameType.DATA, Flags.END_STREAM, 5, sayMessage("late")),
        frame(FrameType.WINDOW_UPDATE, 0, 1, u32(100)),
        frame(FrameType.RST_STREAM, 0, 3, u32(ErrorCode.CANCEL)),
        PING([7, 0, 0, 0, 0, 0, 0, 0]),
      );
      const seen: Frame[] = [];
      assert.ok(await r.until(isPingAck([7]), seen) !== null);
      const resets = seen.filter((f) => f.type === FrameType.RST_STREAM);
      assert.deepEqual(
        resets.map((f) => [f.id, readU32(f.payload)]),
        [[1, ErrorCode.STREAM_CLOSED], [3, ErrorCode.STREAM_CLOSED]],
      );
      assert.ok(!seen.some((f) => f.type === FrameType.GOAWAY));
      // A second late frame on stream 1 is ignored now (it was reset).
      await r.send(frame(FrameType.DATA, 0, 1, [0]), PING([8, 0, 0, 0, 0, 0, 0, 0]));
      const again: Frame[] = [];
      assert.ok(await r.until(isPingAck([8]), again) !== null);
      assert.deepEqual(again.filter((f) => f.type === FrameType.RST_STREAM), []);
      // The connection still serves.
      await call(r, 7, "seven");
    } finally {
      r.close();
    }
  });
});

Deno.test("h2: SETTINGS not acknowledged in time end the connection with SETTINGS_TIMEOUT", async () => {
  await withServer(async (path) => {
    const silent = await Raw.open(path);
    const polite = await Raw.open(path);
    try {
      await polite.send(frame(FrameType.SETTINGS, Flags.ACK, 0));
      // Bounded, so that a server without the timeout fails the test instead of hanging it.
      let timer: ReturnType<typeof setTimeout> | undefined;
      const goaway = await Promise.race([
        silent.until((f) => f.type === FrameType.GOAWAY),
        new Promise<null>((r) => timer = setTimeout(() => r(null), 10_000)),
      ]);
      clearTimeout(timer);
      assert.ok(goaway !== null);
      assert.equal(readU32(goaway.payload, 4), ErrorCode.SETTINGS_TIMEOUT);
      assert.equal(await silent.until(() => false), null, "the connection closes");
      // The peer that acknowledged is still served, well after the timeout.
      await new Promise((r) => setTimeout(r, 300));
      await call(polite, 1, "polite");
    } finally {
      silent.close();
      polite.close();
    }
  }, { http2: { settingsTimeoutMs: 100 } });
});

Deno.test("h2: graceful shutdown takes streams sent before the client saw GOAWAY, then names the last one", async () => {
  await withServer(async (path, server) => {
    const a = await Raw.open(path);
    const b = await Raw.open(path);
    let shutdown: Promise<void> | undefined;
    try {
      const slow = (id: number, ms: number) =>
        frame(
          FrameType.DATA,
          Flags.END_STREAM,
          id,
          frameMessage(
            toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: "slow", delayMs: ms })),
          ),
        );
      const say = request("/berth.testing.v1.Echo/Say");
      await a.send(frame(FrameType.HEADERS, Flags.END_HEADERS, 1, say), slow(1, 300));
      await b.send(frame(FrameType.HEADERS, Flags.END_HEADERS, 1, say), slow(1, 600));
      // Both calls are running once a PING round trip is done.
      await a.send(PING([1, 0, 0, 0, 0, 0, 0, 0]));
      await b.send(PING([1, 0, 0, 0, 0, 0, 0, 0]));
      assert.ok(await a.until(isPingAck([1])) !== null);
      assert.ok(await b.until(isPingAck([1])) !== null);
      shutdown = server.shutdown({ timeoutMs: 5000 });

      // First GOAWAY: every stream is still taken; then a PING.
      const first = await a.until((f) => f.type === FrameType.GOAWAY);
      assert.equal(readU32(first!.payload) & 0x7fffffff, 0x7fffffff);
      assert.equal(readU32(first!.payload, 4), ErrorCode.NO_ERROR);
      const ping = await a.until((f) => f.type === FrameType.PING && f.flags === 0);
      assert.ok(ping !== null);
      // A stream the client sent before it saw the GOAWAY is served.
      const late = await call(a, 3, "in-flight");
      const trailers = a.decoder.decode(late[late.length - 1].payload);
      assert.deepEqual(trailers, ["grpc-status", "0"]);
      // The PING comes back: the final GOAWAY names stream 3.
      await a.send(frame(FrameType.PING, Flags.ACK, 0, ping!.payload));
      const final = await a.until((f) => f.type === FrameType.GOAWAY);
      assert.equal(readU32(final!.payload) & 0x7fffffff, 3);
      assert.equal(readU32(final!.payload, 4), ErrorCode.NO_ERROR);
      const rest: Frame[] = [];
      assert.equal(await a.until(() => false, rest), null, "a closes once its streams are done");
      assert.ok(rest.some((f) => f.id === 1 && (f.flags & Flags.END_STREAM) !== 0));

      // b never answers the PING: its final GOAWAY comes after the bound, and
      // frames of a stream opened after it are ignored, not a connection error.
      const bFinal = await b.until((f) =>
        f.type === FrameType.GOAWAY && (readU32(f.payload) & 0x7fffffff) !== 0x7fffffff
      );
      assert.equal(readU32(bFinal!.payload) & 0x7fffffff, 1);
      await b.send(frame(FrameType.HEADERS, Flags.END_HEADERS, 3, say), slow(3, 0));
      const bRest: Frame[] = [];
      assert.equal(await b.until(() => false, bRest), null, "b closes once stream 1 is done");
      assert.ok(bRest.some((f) => f.id === 1 && (f.flags & Flags.END_STREAM) !== 0));
      assert.ok(!bRest.some((f) => f.id === 3), "stream 3 was not taken");
      assert.ok(!bRest.some((f) => f.type === FrameType.GOAWAY), "no connection error");
      await shutdown;
    } finally {
      a.close();
      b.close();
      await shutdown;
    }
  }, { http2: { drainPingMs: 200 } });
});
