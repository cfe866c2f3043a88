import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Echo, EchoRequestSchema, EchoResponseSchema } from "../gen/berth/testing/v1/echo_pb.ts";
import { RequestSchema, ResponseSchema } from "../gen/ttrpc/request_pb.ts";
import { connect } from "./client.ts";
import { serviceClient } from "./stubs.ts";
import { startEcho } from "./fixture_test.ts";
import { Server } from "./server.ts";
import type { ServiceImpl } from "../rpc/mod.ts";

/** A hand-driven peer: writes raw bytes, reads raw frames, no berth client code involved. */
class RawPeer {
  #buf = new Uint8Array(0);
  private constructor(readonly conn: Deno.UnixConn) {}
  static async open(path: string): Promise<RawPeer> {
    return new RawPeer(await Deno.connect({ transport: "unix", path }));
  }
  async send(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.conn.write(bytes.subarray(off));
  }
  frame(
    id: number,
    type: number,
    flags: number,
    payload: Uint8Array,
    length = payload.length,
  ): Uint8Array {
    const out = new Uint8Array(10 + payload.length);
    const v = new DataView(out.buffer);
    v.setUint32(0, length);
    v.setUint32(4, id);
    out[8] = type;
    out[9] = flags;
    out.set(payload, 10);
    return out;
  }
  request(service: string, method: string, payload: Uint8Array): Uint8Array {
    return toBinary(RequestSchema, create(RequestSchema, { service, method, payload }));
  }
  async #fill(n: number): Promise<boolean> {
    while (this.#buf.length < n) {
      const chunk = new Uint8Array(65536);
      const got = await this.conn.read(chunk);
      if (got === null) return false;
      const next = new Uint8Array(this.#buf.length + got);
      next.set(this.#buf);
      next.set(chunk.subarray(0, got), this.#buf.length);
      this.#buf = next;
    }
    return true;
  }
  /** The next frame, or null when the server closed the connection. */
  async read(): Promise<{ id: number; type: number; flags: number; payload: Uint8Array } | null> {
    if (!(await this.#fill(10))) return null;
    const v = new DataView(this.#buf.buffer, this.#buf.byteOffset);
    const len = v.getUint32(0);
    const id = v.getUint32(4);
    const type = this.#buf[8];
    const flags = this.#buf[9];
    if (!(await this.#fill(10 + len))) return null;
    const payload = this.#buf.slice(10, 10 + len);
    this.#buf = this.#buf.slice(10 + len);
    return { id, type, flags, payload };
  }
  async status(): Promise<{ id: number; code: number; message: string; payload: Uint8Array }> {
    const f = await this.read();
    assert.ok(f, "expected a response frame, the server closed the connection");
    assert.equal(f.type, 2, "expected a Response frame");
    const r = fromBinary(ResponseSchema, f.payload);
    return {
      id: f.id,
      code: r.status?.code ?? 0,
      message: r.status?.message ?? "",
      payload: r.payload,
    };
  }
  close(): void {
    try {
      this.conn.close();
    } catch { /* already closed */ }
  }
}

const say = (text: string) => toBinary(EchoRequestSchema, create(EchoRequestSchema, { text }));

async function stillServes(path: string): Promise<void> {
  const client = await connect(path);
  try {
    assert.equal((await serviceClient(client, Echo).say({ text: "alive" })).text, "alive");
  } finally {
    client.close();
  }
}

Deno.test("a raw Go-style unary request gets a Go-style response", async () => {
  const srv = await startEcho();
  const peer = await RawPeer.open(srv.path);
  try {
    await peer.send(peer.frame(1, 1, 0, peer.request("berth.testing.v1.Echo", "Say", say("raw"))));
    const st = await peer.status();
    assert.deepEqual([st.id, st.code], [1, 0]);
    assert.equal(fromBinary(EchoResponseSchema, st.payload).text, "raw");
  } finally {
    peer.close();
    await srv.stop();
  }
});

Deno.test("malformed input: truncated header then close; server keeps serving", async () => {
  const srv = await startEcho();
  try {
    const peer = await RawPeer.open(srv.path);
    await peer.send(new Uint8Array([0, 0, 0, 9, 0]));
    peer.close();
    const peer2 = await RawPeer.open(srv.path);
    const f = peer2.frame(1, 1, 0, peer2.request("berth.testing.v1.Echo", "Say", say("x")));
    await peer2.send(f.subarray(0, f.length - 3)); // truncated payload, then close
    peer2.close();
    await stillServes(srv.path);
  } finally {
    await srv.stop();
  }
});

Deno.test("malformed input: length over 4 MiB gets ResourceExhausted and the connection lives on", async () => {
  const srv = await startEcho();
  const peer = await RawPeer.open(srv.path);
  try {
    const over = (4 << 20) + 1;
    await peer.send(peer.frame(1, 1, 0, new Uint8Array(0), over));
    await peer.send(new Uint8Array(over)); // the payload the header announced
    const st = await peer.status();
    assert.deepEqual([st.id, Code[st.code]], [1, "ResourceExhausted"]);
    assert.match(st.message, /exceeds the limit/);
    await peer.send(
      peer.frame(3, 1, 0, peer.request("berth.testing.v1.Echo", "Say", say("after"))),
    );
    const ok = await peer.status();
    assert.deepEqual([ok.id, ok.code], [3, 0]);
  } finally {
    peer.close();
    await srv.stop();
  }
});

Deno.test("malformed input: length over 4 MiB then hang-up closes just that connection", async () => {
  const srv = await startEcho();
  try {
    const peer = await RawPeer.open(srv.path);
    await peer.send(peer.frame(1, 1, 0, new Uint8Array(100), 0xffffffff));
    peer.close();
    await stillServes(srv.path);
  } finally {
    await srv.stop();
  }
});

Deno.test("malformed input: unknown frame type, garbage envelope, garbage payload, bad ids", async () => {
  const srv = await startEcho();
  const peer = await RawPeer.open(srv.path);
  try {
    await peer.send(peer.frame(1, 7, 0, new Uint8Array([1, 2, 3])));
    let st = await peer.status();
    assert.deepEqual([st.id, Code[st.code]], [1, "InvalidArgument"]);
    assert.match(st.message, /message type 7/);

    await peer.send(peer.frame(3, 1, 0, new Uint8Array([0x0a, 0x7f, 1])));
    st = await peer.status();
    assert.deepEqual([st.id, Code[st.code]], [3, "InvalidArgument"]);
    assert.match(st.message, /malformed request envelope/);

    const garbage = new Uint8Array([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x99]); // text: length beyond end
    await peer.send(peer.frame(5, 1, 0, peer.request("berth.testing.v1.Echo", "Say", garbage)));
    st = await peer.status();
    assert.deepEqual([st.id, Code[st.code]], [5, "InvalidArgument"]);
    assert.match(st.message, /cannot decode berth\.testing\.v1\.EchoRequest/);

    await peer.send(peer.frame(8, 1, 0, peer.request("berth.testing.v1.Echo", "Say", say("even"))));
    st = await peer.status();
    assert.deepEqual([st.id, Code[st.code]], [8, "InvalidArgument"]);

    await peer.send(
      peer.frame(5, 1, 0, peer.request("berth.testing.v1.Echo", "Say", say("reused"))),
    );
    st = await peer.status();
    assert.deepEqual([st.id, Code[st.code]], [5, "InvalidArgument"]);
    assert.match(st.message, /not above/);

    // Data for a stream that does not exist is ignored; the connection still answers.
    await peer.send(peer.frame(99, 3, 0, say("stray")));
    await peer.send(
      peer.frame(101, 1, 0, peer.request("berth.testing.v1.Echo", "Say", say("fine"))),
    );
    st = await peer.status();
    assert.deepEqual([st.id, st.code], [101, 0]);
    await stillServes(srv.path);
  } finally {
    peer.close();
    await srv.stop();
  }
});

/** A small seeded generator (mulberry32): the same seed gives the same bytes. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Replay a failure with BERTH_FUZZ_SEED=<the seed it printed>.
Deno.test("random garbage on many connections never crashes the server", async () => {
  const fromEnv = Deno.env.get("BERTH_FUZZ_SEED");
  const seed = fromEnv ? Number(fromEnv) : crypto.getRandomValues(new Uint32Array(1))[0];
  console.log(`fuzz seed ${seed} (replay: BERTH_FUZZ_SEED=${seed})`);
  const random = seeded(seed);
  const srv = await startEcho();
  try {
    for (let i = 0; i < 50; i++) {
      const peer = await RawPeer.open(srv.path);
      const junk = Uint8Array.from(
        { length: 1 + Math.floor(random() * 300) },
        () => Math.floor(random() * 256),
      );
      junk[0] = 0; // keep lengths under 16 MiB so the server does not wait for a huge payload
      await peer.send(junk).catch(() => {});
      peer.close();
    }
    await stillServes(srv.path);
  } finally {
    await srv.stop();
  }
});

Deno.test("streaming over raw frames: Go-compatible flags", async () => {
  const srv = await startEcho();
  const peer = await RawPeer.open(srv.path);
  try {
    // Server streaming: request carries remote-closed; data frames, then remote-closed|no-data.
    const countReq = toBinary(EchoRequestSchema, create(EchoRequestSchema, { count: 2 }));
    await peer.send(
      peer.frame(1, 1, 0x1, peer.request("berth.testing.v1.Echo", "Count", countReq)),
    );
    const a = await peer.read(), b = await peer.read(), end = await peer.read();
    assert.deepEqual([a?.type, a?.flags, b?.type, b?.flags], [3, 0, 3, 0]);
    assert.deepEqual([end?.id, end?.type, end?.flags, end?.payload.length], [1, 3, 0x5, 0]);
    // Client streaming: remote-open request without payload, data, close; a Response ends it.
    await peer.send(
      peer.frame(3, 1, 0x2, peer.request("berth.testing.v1.Echo", "Join", new Uint8Array(0))),
    );
    await peer.send(peer.frame(3, 3, 0, say("p")));
    await peer.send(peer.frame(3, 3, 0, say("q")));
    await peer.send(peer.frame(3, 3, 0x5, new Uint8Array(0)));
    const st = await peer.status();
    assert.equal(st.id, 3);
    assert.equal(fromBinary(EchoResponseSchema, st.payload).text, "p+q");
    // Garbage in a data frame fails that stream with InvalidArgument.
    await peer.send(
      peer.frame(5, 1, 0x2, peer.request("berth.testing.v1.Echo", "Join", new Uint8Array(0))),
    );
    await peer.send(peer.frame(5, 3, 0, new Uint8Array([0x0a, 0x50])));
    const bad = await peer.status();
    assert.deepEqual([bad.id, Code[bad.code]], [5, "InvalidArgument"]);
  } finally {
    peer.close();
    await srv.stop();
  }
});

Deno.test("graceful shutdown lets in-flight calls finish, then closes", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const inflight = Array.from({ length: 5 }, (_, i) => echo.say({ text: `f${i}`, delayMs: 150 }));
    await new Promise((r) => setTimeout(r, 30));
    await srv.server.shutdown({ timeoutMs: 5000 });
    assert.deepEqual(
      [...srv.observed.finished].sort(),
      ["f0", "f1", "f2", "f3", "f4"],
      "shutdown resolved only after the calls in flight were answered",
    );
    assert.deepEqual((await Promise.all(inflight)).map((r) => r.text), [
      "f0",
      "f1",
      "f2",
      "f3",
      "f4",
    ]);
    await client.done; // the server closed the idle connection
    await assert.rejects(
      connect(srv.path),
      (e: unknown) => e instanceof BerthError && e.code === Code.Unavailable,
    );
    assert.equal(srv.server.connections, 0);
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("graceful shutdown gives up after its timeout and closes busy connections", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const stuck = echo.say({ text: "stuck", delayMs: 60_000 });
    // It fails while shutdown() runs: take its outcome before that.
    const outcome = stuck.then(() => null, (e) => Promise.reject(e));
    outcome.catch(() => {});
    await new Promise((r) => setTimeout(r, 30));
    await srv.server.shutdown({ timeoutMs: 100 });
    assert.deepEqual(srv.observed.finished, [], "shutdown gave up before the stuck call finished");
    await assert.rejects(
      outcome,
      (e: unknown) => e instanceof BerthError && e.code === Code.Unavailable,
    );
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("listen: socket is 0600, a stale file is replaced, a live socket is refused", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/s.sock`;
  try {
    // A stale socket: bound, then its listener closed without unlinking.
    const stale = Deno.listen({ transport: "unix", path });
    stale.close();
    const a = new Server();
    a.register(Echo, {});
    await a.listen(path);
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    const b = new Server();
    await assert.rejects(
      b.listen(path),
      (e: unknown) => e instanceof BerthError && e.code === Code.AlreadyExists,
    );
    await Deno.writeTextFile(`${dir}/plain`, "x");
    await assert.rejects(b.listen(`${dir}/plain`), /not a socket/);
    // Methods missing from the impl are Unimplemented, naming the method.
    const client = await connect(path);
    await assert.rejects(
      serviceClient(client, Echo).say({}),
      (e: unknown) =>
        e instanceof BerthError && e.code === Code.Unimplemented && /Say/.test(e.message),
    );
    client.close();
    await a.close();
    await b.close();
    await assert.rejects(Deno.lstat(path), Deno.errors.NotFound, "close removes the socket file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("register: typos and duplicates are refused; one impl serves two names", async () => {
  const srv = await startEcho();
  try {
    assert.throws(() => srv.server.register(Echo, {}), /already registered/);
    const typo = { sya: () => ({}) } as unknown as ServiceImpl<typeof Echo>;
    assert.throws(
      () => srv.server.register(Echo, typo, { name: "x.Echo" }),
      /no method "sya"/,
    );
    srv.server.register(Echo, { say: (r) => ({ text: `v3:${r.text}` }) }, {
      name: "berth.testing.v3.Echo",
    });
    const client = await connect(srv.path);
    try {
      const v3 = serviceClient(client, Echo, { name: "berth.testing.v3.Echo" });
      assert.equal((await v3.say({ text: "a" })).text, "v3:a");
    } finally {
      client.close();
    }
  } finally {
    await srv.stop();
  }
});

Deno.test("class-based impls keep `this`; Empty answers may be nothing; unix:// addresses connect", async () => {
  const { Task } = await import("../gen/containerd/task/v2/shim_pb.ts");
  class TaskImpl {
    killed: string[] = []; // a data field, not a handler
    kill(req: { id: string }): void {
      this.killed.push(req.id);
    }
    state(req: { id: string }) {
      return { id: req.id, pid: this.killed.length };
    }
  }
  const impl = new TaskImpl();
  const dir = await Deno.makeTempDir();
  const server = new Server();
  server.register(Task, impl);
  await server.listen(`${dir}/t.sock`);
  const client = await connect(`unix://${dir}/t.sock`);
  try {
    const task = serviceClient(client, Task);
    await task.kill({ id: "c1" });
    assert.deepEqual(impl.killed, ["c1"]);
    assert.equal((await task.state({ id: "c1" })).pid, 1);
  } finally {
    client.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a peer that never reads its answers is paused, and the server stays responsive", async () => {
  const srv = await startEcho();
  const peer = await RawPeer.open(srv.path);
  try {
    // ~64 MiB of answers requested (64 KiB blobs echoed back), none read.
    const blob = toBinary(
      EchoRequestSchema,
      create(EchoRequestSchema, { blob: new Uint8Array(64 << 10) }),
    );
    const flood = (async () => {
      for (let i = 0; i < 1000; i++) {
        await peer.send(
          peer.frame(2 * i + 1, 1, 0, peer.request("berth.testing.v1.Echo", "Say", blob)),
        );
      }
    })();
    let flooded = false;
    flood.then(() => flooded = true, () => {});
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(flooded, false, "the server must stop reading from a peer that does not read");
    await stillServes(srv.path);
    // Reading now drains the answers that were held back.
    let answered = 0;
    while (answered < 50) {
      const f = await peer.read();
      assert.ok(f);
      answered++;
    }
  } finally {
    peer.close();
    await srv.stop();
  }
});

Deno.test("an observer hears of each call's start and its end with the status code, once", async () => {
  const seen: string[] = [];
  const srv = await startEcho({
    observe: (entry) => {
      seen.push(`start ${entry.service}/${entry.method} ${entry.kind}`);
      return (code) => seen.push(`end ${entry.method} ${Code[code]}`);
    },
  });
  const peer = await RawPeer.open(srv.path);
  try {
    await peer.send(peer.frame(1, 1, 0, peer.request("berth.testing.v1.Echo", "Say", say("a"))));
    assert.equal((await peer.status()).code, 0);
    const fail = toBinary(
      EchoRequestSchema,
      create(EchoRequestSchema, { text: "no", failCode: Code.NotFound }),
    );
    await peer.send(peer.frame(3, 1, 0, peer.request("berth.testing.v1.Echo", "Say", fail)));
    assert.equal((await peer.status()).code, Code.NotFound);
    // An unknown method is no call of a registered method: not observed.
    await peer.send(peer.frame(5, 1, 0, peer.request("berth.testing.v1.Echo", "Nope", say("x"))));
    assert.equal((await peer.status()).code, Code.Unimplemented);
    // A call cut off by the connection's end is over too (Unavailable).
    const slow = toBinary(
      EchoRequestSchema,
      create(EchoRequestSchema, { text: "s", delayMs: 5000 }),
    );
    await peer.send(peer.frame(7, 1, 0, peer.request("berth.testing.v1.Echo", "Say", slow)));
    while (seen.length < 5) await new Promise((r) => setTimeout(r, 5));
    peer.close();
    while (seen.length < 6) await new Promise((r) => setTimeout(r, 5));
    assert.deepEqual(seen, [
      "start berth.testing.v1.Echo/Say unary",
      "end Say OK",
      "start berth.testing.v1.Echo/Say unary",
      "end Say NotFound",
      "start berth.testing.v1.Echo/Say unary",
      "end Say Unavailable",
    ]);
  } finally {
    peer.close();
    await srv.stop();
  }
});
