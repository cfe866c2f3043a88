import assert from "node:assert/strict";
import type { ByteSink } from "../rpc/mod.ts";
import {
  type ByteSource,
  Flag,
  FrameWriter,
  FramingError,
  HEADER_LENGTH,
  MAX_MESSAGE_LENGTH,
  MessageType,
  putHeader,
  readFrames,
} from "./channel.ts";

/** A sink that records each write and takes at most `max` bytes per write. */
class Recorder implements ByteSink {
  writes: Uint8Array[] = [];
  constructor(readonly max = Infinity) {}
  write(p: Uint8Array): Promise<number> {
    const n = Math.min(p.length, this.max);
    this.writes.push(p.slice(0, n));
    return Promise.resolve(n);
  }
  bytes(): Uint8Array {
    const total = this.writes.reduce((a, w) => a + w.length, 0);
    const out = new Uint8Array(total);
    let at = 0;
    for (const w of this.writes) {
      out.set(w, at);
      at += w.length;
    }
    return out;
  }
}

/** A source that hands out `data` in chunks of `chunk` bytes. */
function source(data: Uint8Array, chunk = Infinity): ByteSource {
  let at = 0;
  return {
    read(p: Uint8Array): Promise<number | null> {
      if (at >= data.length) return Promise.resolve(null);
      const n = Math.min(p.length, chunk, data.length - at);
      p.set(data.subarray(at, at + n));
      at += n;
      return Promise.resolve(n);
    },
  };
}

type Seen = [number, number, number, Uint8Array] | ["oversized", number, number];

async function collect(src: ByteSource): Promise<Seen[]> {
  const seen: Seen[] = [];
  await readFrames(src, {
    frame: (id, type, flags, payload) => void seen.push([id, type, flags, payload]),
    oversized: (id, _t, _f, len) => void seen.push(["oversized", id, len]),
  });
  return seen;
}

function frameBytes(id: number, type: number, flags: number, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(HEADER_LENGTH + payload.length);
  putHeader(out, 0, payload.length, id, type, flags);
  out.set(payload, HEADER_LENGTH);
  return out;
}

Deno.test("header layout: length and stream id big-endian, then type and flags", () => {
  const b = frameBytes(
    0x01020304,
    MessageType.Data,
    Flag.RemoteClosed | Flag.NoData,
    new Uint8Array(3),
  );
  assert.deepEqual([...b.subarray(0, 10)], [0, 0, 0, 3, 1, 2, 3, 4, 3, 5]);
});

Deno.test("frames written in one tick go out in one write and read back intact", async () => {
  const sink = new Recorder();
  const w = new FrameWriter(sink);
  const sent: Array<[number, Uint8Array]> = [];
  for (let i = 0; i < 32; i++) {
    const payload = crypto.getRandomValues(new Uint8Array(i * 37));
    sent.push([2 * i + 1, payload]);
    w.frame(2 * i + 1, MessageType.Response, 0, payload);
  }
  await w.drained();
  assert.equal(sink.writes.length, 1, "32 frames from one tick must coalesce into one write");
  for (const chunk of [Infinity, 1, 7, 1000]) {
    const seen = await collect(source(sink.bytes(), chunk));
    assert.equal(seen.length, 32);
    seen.forEach((s, i) => {
      assert.equal(s[0], sent[i][0]);
      assert.equal(s[1], MessageType.Response);
      assert.deepEqual(s[3], sent[i][1]);
    });
  }
});

Deno.test("writer finishes partial writes and keeps frames queued during a write", async () => {
  const sink = new Recorder(5);
  const w = new FrameWriter(sink);
  w.frame(1, MessageType.Request, 0, new Uint8Array(100).fill(7));
  await Promise.resolve();
  w.frame(3, MessageType.Request, Flag.RemoteOpen, new Uint8Array(3).fill(9));
  await w.drained();
  const seen = await collect(source(sink.bytes()));
  assert.equal(seen.length, 2);
  assert.deepEqual(seen[0][3], new Uint8Array(100).fill(7));
  assert.deepEqual([seen[1][0], seen[1][2]], [3, Flag.RemoteOpen]);
});

Deno.test("a payload of exactly 4 MiB passes; the read buffer grows for it", async () => {
  const big = new Uint8Array(MAX_MESSAGE_LENGTH).fill(0xab);
  const first = frameBytes(1, 1, 0, big);
  const data = new Uint8Array(first.length + HEADER_LENGTH + 1);
  data.set(first);
  data.set(frameBytes(3, 1, 0, new Uint8Array([1])), first.length);
  const seen = await collect(source(data, 65536));
  assert.equal(seen.length, 2);
  assert.equal((seen[0][3] as Uint8Array).length, MAX_MESSAGE_LENGTH);
  assert.deepEqual(seen[1][3], new Uint8Array([1]));
});

Deno.test("an oversized frame is skipped and reported; the next frame still arrives", async () => {
  const over = MAX_MESSAGE_LENGTH + 1;
  const data = new Uint8Array(HEADER_LENGTH + over + 11);
  putHeader(data, 0, over, 5, MessageType.Request, 0);
  putHeader(data, HEADER_LENGTH + over, 1, 7, MessageType.Request, 0);
  data[data.length - 1] = 42;
  const seen = await collect(source(data, 100_000));
  assert.deepEqual(seen[0], ["oversized", 5, over]);
  assert.equal(seen[1][0], 7);
  assert.deepEqual(seen[1][3], new Uint8Array([42]));
});

Deno.test("an oversized length with the payload missing is a framing error, not a hang", async () => {
  const data = new Uint8Array(HEADER_LENGTH + 10);
  putHeader(data, 0, 0xffffffff, 1, MessageType.Request, 0);
  await assert.rejects(collect(source(data)), FramingError);
});

Deno.test("the stream ending inside a header or a payload is a FramingError", async () => {
  await assert.rejects(collect(source(new Uint8Array([0, 0, 0]))), /inside a frame header/);
  const cut = frameBytes(1, 1, 0, new Uint8Array(20)).subarray(0, 15);
  await assert.rejects(collect(source(cut, 4)), /inside a frame payload/);
  assert.deepEqual(await collect(source(new Uint8Array(0))), []);
});

Deno.test("payloads handed out are copies, not views of the reused buffer", async () => {
  const data = new Uint8Array([
    ...frameBytes(1, 1, 0, new Uint8Array([1, 2, 3])),
    ...frameBytes(3, 1, 0, new Uint8Array([4, 5, 6])),
  ]);
  const seen = await collect(source(data, 13));
  assert.deepEqual(seen[0][3], new Uint8Array([1, 2, 3]));
  assert.deepEqual(seen[1][3], new Uint8Array([4, 5, 6]));
});

Deno.test("a failing sink reports once and later frames are dropped", async () => {
  let errors = 0;
  const w = new FrameWriter({ write: () => Promise.reject(new Error("EPIPE")) }, () => errors++);
  w.frame(1, 1, 0, new Uint8Array(10));
  await w.drained();
  w.frame(3, 1, 0, new Uint8Array(10));
  await w.drained();
  assert.equal(errors, 1);
  assert.equal(w.pendingBytes, 10 + HEADER_LENGTH); // kept only the frame being built
  assert.throws(() => w.frame(5, 1, 0, new Uint8Array(MAX_MESSAGE_LENGTH + 1)), RangeError);
});
