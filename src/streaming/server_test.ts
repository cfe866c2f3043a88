import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { concatBytes } from "../bytes/mod.ts";
import { parseHead } from "./http.ts";
import { decodeResizes } from "./remotecommand.ts";
import { encodeFrame, type Frame, FrameDecoder } from "./spdy_frame.ts";
import { HeaderCodec } from "./spdy_headers.ts";
import { TokenCache } from "./tokens.ts";
import { StreamServer } from "./server.ts";
import type { ForwardConn, StreamingRuntime, StreamIO, TerminalSize } from "./types.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A runtime whose exec writes a fixed text and exits with a fixed code. */
class FakeRuntime implements StreamingRuntime {
  calls: string[][] = [];
  constructor(private out: string, private code: number) {}
  async exec(_id: string, cmd: string[], io: StreamIO) {
    this.calls.push(cmd);
    let input = "";
    if (io.stdin) { for await (const c of io.stdin) input += dec.decode(c); }
    const w = io.stdout!.getWriter();
    await w.write(enc.encode(this.out + input));
    await w.close();
    return { exitCode: this.code };
  }
  attach(): Promise<void> {
    return Promise.reject(new Error("attach is not used here"));
  }
  portForward(_s: string, _p: number, _c: ForwardConn): Promise<void> {
    return Promise.reject(new Error("nothing listens on that port"));
  }
}

async function withServer(
  runtime: StreamingRuntime,
  fn: (s: StreamServer) => Promise<void>,
  opts: { tokenTtlMs?: number; streamCreationTimeoutMs?: number; streamIdleTimeoutMs?: number } =
    {},
) {
  const s = new StreamServer({ runtime, ...opts });
  s.start();
  try {
    await fn(s);
  } finally {
    await s.close();
  }
}

/** Sends a raw HTTP request and reads the response head (and whatever follows). */
async function request(url: string, headers: Record<string, string>) {
  const u = new URL(url);
  const conn = await Deno.connect({ hostname: u.hostname, port: Number(u.port) });
  const lines = [`POST ${u.pathname} HTTP/1.1`, `Host: ${u.host}`];
  for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
  await conn.write(enc.encode(lines.join("\r\n") + "\r\n\r\n"));
  let buf = new Uint8Array(0);
  const chunk = new Uint8Array(4096);
  for (;;) {
    const text = dec.decode(buf);
    const end = text.indexOf("\r\n\r\n");
    if (end >= 0) {
      const status = Number(text.split(" ")[1]);
      return { conn, status, head: text.slice(0, end), rest: buf.slice(end + 4) };
    }
    const n = await conn.read(chunk);
    if (n === null) throw new Error("closed before a response");
    buf = new Uint8Array([...buf, ...chunk.subarray(0, n)]);
  }
}

const upgrade = (protocols: string) => ({
  Connection: "Upgrade",
  Upgrade: "SPDY/3.1",
  "X-Stream-Protocol-Version": protocols,
});

/** The client side of SPDY, enough to open streams and read what comes back. */
class SpdyClient {
  codec = new HeaderCodec();
  decoder = new FrameDecoder();
  next = 1;
  constructor(public conn: Deno.Conn, rest: Uint8Array) {
    this.decoder.push(rest);
  }
  async open(headers: Record<string, string>, fin = false): Promise<number> {
    const id = this.next;
    this.next += 2;
    const block = this.codec.compress(new Map(Object.entries(headers).map(([k, v]) => [k, [v]])));
    await this.conn.write(
      encodeFrame({
        type: "syn_stream",
        streamId: id,
        associatedId: 0,
        priority: 0,
        flags: fin ? 1 : 0,
        headerBlock: block,
      }),
    );
    return id;
  }
  async send(f: Frame) {
    await this.conn.write(encodeFrame(f));
  }
  frames: Frame[] = [];
  /** Every frame until the server closes the connection. */
  async readAll(): Promise<Frame[]> {
    await this.readUntil(() => false);
    return this.frames;
  }
  /** Reads frames until `done(frames)` holds; false when the connection ended first. */
  async readUntil(done: (frames: Frame[]) => boolean): Promise<boolean> {
    const buf = new Uint8Array(65536);
    for (;;) {
      for (let f = this.decoder.next(); f; f = this.decoder.next()) {
        if (f.type === "syn_reply") this.codec.decompress(f.headerBlock);
        this.frames.push(f);
      }
      if (done(this.frames)) return true;
      const n = await this.conn.read(buf).catch(() => null);
      if (n === null) return false;
      this.decoder.push(buf.subarray(0, n));
    }
  }
}

/** True once stream `id` got DATA with FIN. */
const finished = (id: number) => (frames: Frame[]) =>
  frames.some((f) => f.type === "data" && f.streamId === id && (f.flags & 1) !== 0);

const dataOf = (frames: Frame[], id: number) =>
  dec.decode(
    concatBytes(...frames.flatMap((f) => f.type === "data" && f.streamId === id ? [f.data] : [])),
  );

Deno.test("stream server: v4 exec reports a non-zero exit as the kubelet's Status JSON", async () => {
  const rt = new FakeRuntime("out:", 7);
  await withServer(rt, async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/exec\/[A-Za-z0-9_-]+$/);
    const r = await request(url, upgrade("v9.channel.k8s.io, v4.channel.k8s.io,v3.channel.k8s.io"));
    assert.equal(r.status, 101);
    assert.match(r.head, /\r\nX-Stream-Protocol-Version: v4\.channel\.k8s\.io/i);
    assert.match(r.head, /\r\nUpgrade: SPDY\/3\.1/i);
    const c = new SpdyClient(r.conn, r.rest);
    const err = await c.open({ streamType: "error" });
    const stdin = await c.open({ streamType: "stdin" });
    const stdout = await c.open({ streamType: "stdout" });
    await c.send({ type: "data", streamId: stdin, flags: 0, data: enc.encode("in") });
    await c.send({ type: "ping", id: 1 });
    await c.send({ type: "data", streamId: stdin, flags: 1, data: new Uint8Array(0) });
    const frames = await c.readAll();
    r.conn.close();
    assert.deepEqual(
      frames.filter((f) => f.type === "syn_reply").map((f) => f.type === "syn_reply" && f.streamId),
      [err, stdin, stdout],
    );
    assert.ok(frames.some((f) => f.type === "ping" && f.id === 1), "ping echoed");
    assert.equal(dataOf(frames, stdout), "out:in");
    assert.deepEqual(JSON.parse(dataOf(frames, err)), {
      metadata: {},
      status: "Failure",
      message: "command terminated with non-zero exit code: exit status 7",
      reason: "NonZeroExitCode",
      details: { causes: [{ reason: "ExitCode", message: "7" }] },
    });
    assert.deepEqual(rt.calls, [["x"]]);
  });
});

Deno.test("stream server: v2 reports only failures, as text", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: false,
    });
    const r = await request(url, upgrade("v2.channel.k8s.io"));
    const c = new SpdyClient(r.conn, r.rest);
    const err = await c.open({ streamType: "error" });
    await c.open({ streamType: "stdout" });
    const frames = await c.readAll();
    r.conn.close();
    assert.equal(dataOf(frames, err), "");
  });
});

Deno.test("stream server: tokens are single-use; unknown paths and tokens get 404", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: false,
    });
    const first = await request(url, upgrade("v4.channel.k8s.io"));
    assert.equal(first.status, 101);
    first.conn.close();
    for (
      const u of [url, url.replace("/exec/", "/attach/"), url + "x", url.replace(/\/exec\/.*/, "/")]
    ) {
      const r = await request(u, upgrade("v4.channel.k8s.io"));
      assert.equal(r.status, 404, u);
      r.conn.close();
    }
  });
});

Deno.test("stream server: expired tokens get 404", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const url = s.getAttach({
      containerId: "c1",
      tty: false,
      stdin: false,
      stdout: true,
      stderr: false,
    });
    await new Promise((r) => setTimeout(r, 30));
    const r = await request(url, upgrade("v4.channel.k8s.io"));
    assert.equal(r.status, 404);
    r.conn.close();
  }, { tokenTtlMs: 10 });
});

Deno.test("stream server: handshake failures are 400 and 403", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const req = {
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: false,
    };
    const noUpgrade = await request(s.getExec(req), {
      "X-Stream-Protocol-Version": "v4.channel.k8s.io",
    });
    assert.equal(noUpgrade.status, 400);
    noUpgrade.conn.close();
    const noVersion = await request(s.getExec(req), { Connection: "Upgrade", Upgrade: "SPDY/3.1" });
    assert.equal(noVersion.status, 400);
    noVersion.conn.close();
    const wrong = await request(s.getExec(req), upgrade("v9.channel.k8s.io"));
    assert.equal(wrong.status, 403);
    assert.match(wrong.head, /X-Accepted-Stream-Protocol-Versions: v4\.channel\.k8s\.io/);
    wrong.conn.close();
    const pfWrong = await request(
      s.getPortForward({ podSandboxId: "p", port: [] }),
      upgrade("v4.channel.k8s.io"),
    );
    assert.equal(pfWrong.status, 403);
    pfWrong.conn.close();
  });
});

Deno.test("stream server: a client that never opens its streams is dropped after the timeout", async () => {
  const rt = new FakeRuntime("", 0);
  await withServer(rt, async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    const r = await request(url, upgrade("v4.channel.k8s.io"));
    const c = new SpdyClient(r.conn, r.rest);
    await c.open({ streamType: "error" });
    // Ends when the server gives up (whether the stream was replied first depends on load).
    let timer: ReturnType<typeof setTimeout> | undefined;
    const ended = await Promise.race([
      c.readAll().then(() => true),
      new Promise<boolean>((r) => timer = setTimeout(() => r(false), 10_000)),
    ]);
    clearTimeout(timer);
    assert.ok(ended, "the server kept the connection open past the creation timeout");
    r.conn.close();
    assert.deepEqual(rt.calls, []);
  }, { streamCreationTimeoutMs: 100 });
});

Deno.test("stream server: port-forward refuses bad streams and reports forwarding errors", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const r = await request(
      s.getPortForward({ podSandboxId: "p1", port: [80] }),
      upgrade("portforward.k8s.io"),
    );
    assert.equal(r.status, 101);
    const c = new SpdyClient(r.conn, r.rest);
    const noPort = await c.open({ streamType: "data", requestID: "0" });
    const err = await c.open({ streamType: "error", port: "80", requestID: "1" });
    const data = await c.open({ streamType: "data", port: "80", requestID: "1" });
    assert.ok(await c.readUntil(finished(err)));
    await c.send({ type: "goaway", lastGoodStreamId: 0, status: 0 });
    r.conn.closeWrite();
    const frames = await c.readAll();
    r.conn.close();
    assert.ok(
      frames.some((f) => f.type === "rst_stream" && f.streamId === noPort && f.status === 3),
    );
    assert.match(
      dataOf(frames, err),
      /error forwarding port 80 to pod p1: nothing listens on that port/,
    );
    assert.ok(frames.some((f) => f.type === "data" && f.streamId === data && f.flags === 1));
  });
});

Deno.test("stream server: CRI requests are validated", async () => {
  await withServer(new FakeRuntime("", 0), (s) => {
    const base = {
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: false,
      stdout: true,
      stderr: false,
    };
    for (
      const bad of [
        { ...base, containerId: "" },
        { ...base, cmd: [] },
        { ...base, tty: true, stderr: true },
        { ...base, stdout: false },
      ]
    ) assert.throws(() => s.getExec(bad), (e) => isCode(e, Code.InvalidArgument));
    assert.throws(
      () => s.getPortForward({ podSandboxId: "", port: [] }),
      (e) => isCode(e, Code.InvalidArgument),
    );
    return Promise.resolve();
  });
});

Deno.test("stream server: exec over a v5 websocket, stdin half-closed by the close signal", async () => {
  const rt = new FakeRuntime("ws:", 2);
  await withServer(rt, async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    })
      .replace("http:", "ws:");
    const ws = new WebSocket(url, ["v5.channel.k8s.io"]);
    ws.binaryType = "arraybuffer";
    const messages: Uint8Array[] = [];
    const closed = new Promise<void>((res) => ws.onclose = () => res());
    ws.onmessage = (e) => messages.push(new Uint8Array(e.data as ArrayBuffer));
    await new Promise((res, rej) => {
      ws.onopen = res;
      ws.onerror = rej;
    });
    assert.equal(ws.protocol, "v5.channel.k8s.io");
    ws.send(new Uint8Array([0, ...enc.encode("abc")]));
    ws.send(new Uint8Array([255, 0]));
    await closed;
    assert.deepEqual(Array.from(messages[0]), [1]); // the ready signal
    const on = (ch: number) =>
      messages.filter((m) => m[0] === ch && m.length > 1).map((m) => dec.decode(m.subarray(1)))
        .join("");
    assert.equal(on(1), "ws:abc");
    const status = JSON.parse(on(3));
    assert.equal(status.reason, "NonZeroExitCode");
    assert.deepEqual(status.details.causes, [{ reason: "ExitCode", message: "2" }]);
  });
});

Deno.test("tokens: single use, expiry, and the in-flight bound", () => {
  let now = 1000;
  const t = new TokenCache<string>(50, () => now);
  const a = t.insert("a");
  assert.match(a, /^[A-Za-z0-9_-]{11}$/);
  assert.equal(t.consume(a), "a");
  assert.equal(t.consume(a), undefined);
  const b = t.insert("b");
  now += 50;
  assert.equal(t.consume(b), undefined);
  for (let i = 0; i < 1000; i++) t.insert(String(i));
  assert.throws(() => t.insert("x"), (e) => isCode(e, Code.ResourceExhausted));
  now += 50;
  assert.equal(t.size, 0);
});

Deno.test("resize decoding: concatenated JSON objects, split anywhere", async () => {
  const text = '{"Width":80,"Height":24}\n{"Width":120,"Height":40}{"Width":1,';
  const readable = new ReadableStream<Uint8Array>({
    start(c) {
      for (const ch of text) c.enqueue(enc.encode(ch));
      c.close();
    },
  });
  const got: TerminalSize[] = [];
  for await (const s of decodeResizes(readable)) got.push(s);
  assert.deepEqual(got, [{ width: 80, height: 24 }, { width: 120, height: 40 }]);
});

Deno.test("http: request heads parse; malformed ones are InvalidArgument", () => {
  const h = parseHead(
    "POST /exec/abc?x=1 HTTP/1.1\r\nX-Stream-Protocol-Version: a\r\nx-stream-protocol-version: b, c",
  );
  assert.equal(h.method, "POST");
  assert.equal(h.path, "/exec/abc");
  assert.equal(h.query.get("x"), "1");
  assert.deepEqual(h.headers.get("x-stream-protocol-version"), ["a", "b, c"]);
  for (const bad of ["GET /", "GET / HTTP/1.1\r\nno colon", "GET / HTTP/1.1\r\nbad name: x"]) {
    assert.throws(() => parseHead(bad), (e) => isCode(e, Code.InvalidArgument));
  }
});

Deno.test("stream server: close ends connections and does not wait forever on the runtime", async () => {
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  const rt = new FakeRuntime("", 0);
  rt.exec = async (_id, _cmd, io) => {
    await held;
    await io.stdout?.abort().catch(() => {});
    return { exitCode: 0 };
  };
  const s = new StreamServer({ runtime: rt });
  s.start();
  const url = s.getExec({
    containerId: "c1",
    cmd: ["x"],
    tty: false,
    stdin: false,
    stdout: true,
    stderr: false,
  });
  const r = await request(url, upgrade("v4.channel.k8s.io"));
  const c = new SpdyClient(r.conn, r.rest);
  await c.open({ streamType: "error" });
  await c.open({ streamType: "stdout" });
  const frames = c.readAll();
  await new Promise((res) => setTimeout(res, 50));
  await s.close(100);
  await frames; // the connection was closed under the client
  r.conn.close();
  release();
  await new Promise((res) => setTimeout(res, 10));
});

Deno.test("stream server: stdin larger than a stream's buffer arrives whole", async () => {
  const rt = new FakeRuntime("", 0);
  await withServer(rt, async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    const r = await request(url, upgrade("v4.channel.k8s.io"));
    const c = new SpdyClient(r.conn, r.rest);
    await c.open({ streamType: "error" });
    const stdin = await c.open({ streamType: "stdin" });
    const stdout = await c.open({ streamType: "stdout" });
    const chunk = enc.encode("0123456789abcdef".repeat(2048)); // 32 KiB
    const frames = c.readAll();
    for (let i = 0; i < 96; i++) {
      await c.send({ type: "data", streamId: stdin, flags: 0, data: chunk });
    }
    await c.send({ type: "data", streamId: stdin, flags: 1, data: new Uint8Array(0) });
    const got = dataOf(await frames, stdout);
    r.conn.close();
    assert.equal(got.length, 96 * chunk.length);
  });
});

/** Opens a websocket with `protocols` and collects its binary messages until it closes. */
async function openWs(url: string, protocols: string[]) {
  const ws = new WebSocket(url.replace("http:", "ws:"), protocols);
  ws.binaryType = "arraybuffer";
  const messages: Uint8Array[] = [];
  const closed = new Promise<void>((res) => ws.onclose = () => res());
  const waiters: (() => void)[] = [];
  ws.onmessage = (e) => {
    messages.push(new Uint8Array(e.data as ArrayBuffer));
    for (const w of waiters.splice(0)) w();
  };
  await new Promise((res, rej) => {
    ws.onopen = res;
    ws.onerror = rej;
  });
  const until = async (ok: () => boolean) => {
    while (!ok()) await new Promise<void>((r) => waiters.push(r));
  };
  return { ws, messages, closed, until };
}

Deno.test("stream server: port-forward over a websocket, two ports, channel per port", async () => {
  const rt = new FakeRuntime("", 0);
  const seen: number[] = [];
  rt.portForward = async (_s, port, c) => {
    seen.push(port);
    if (port === 81) throw new Error("refused");
    await c.readable.pipeTo(c.writable); // an echo "pod"
  };
  await withServer(rt, async (s) => {
    const { ws, messages, closed, until } = await openWs(
      s.getPortForward({ podSandboxId: "p1", port: [8080, 81] }),
      ["v4.channel.k8s.io"],
    );
    assert.equal(ws.protocol, "v4.channel.k8s.io");
    const on = (ch: number) =>
      messages.filter((m) => m[0] === ch).map((m) => Array.from(m.subarray(1)));
    await until(() => on(3).length === 2);
    // Each channel opens with its port, little endian: 8080 = 0x1f90, 81 = 0x51.
    assert.deepEqual(on(0)[0], [0x90, 0x1f]);
    assert.deepEqual(on(1)[0], [0x90, 0x1f]);
    assert.deepEqual(on(2)[0], [81, 0]);
    assert.match(
      dec.decode(new Uint8Array(on(3)[1])),
      /error forwarding port 81 to pod p1: refused/,
    );
    ws.send(new Uint8Array([0, ...enc.encode("echo me")]));
    await until(() => on(0).length === 2);
    assert.equal(dec.decode(new Uint8Array(on(0)[1])), "echo me");
    ws.close();
    await closed;
    assert.deepEqual(seen.sort(), [8080, 81].sort());
  });
});

Deno.test("stream server: a websocket port-forward without ports is refused", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const url = s.getPortForward({ podSandboxId: "p1", port: [] });
    const r = await request(url, {
      Connection: "Upgrade",
      Upgrade: "websocket",
      "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version": "13",
    });
    assert.equal(r.status, 400);
    r.conn.close();
  });
});

Deno.test("stream server: an idle connection is closed", async () => {
  const rt = new FakeRuntime("", 0);
  let release!: () => void;
  const held = new Promise<void>((r) => release = r);
  rt.exec = async () => {
    await held;
    return { exitCode: 0 };
  };
  await withServer(rt, async (s) => {
    const url = s.getExec({
      containerId: "c1",
      cmd: ["x"],
      tty: false,
      stdin: true,
      stdout: true,
      stderr: false,
    });
    const r = await request(url, upgrade("v4.channel.k8s.io"));
    const c = new SpdyClient(r.conn, r.rest);
    for (const t of ["error", "stdin", "stdout"]) await c.open({ streamType: t });
    const started = Date.now();
    await c.readAll(); // the server closes the silent connection
    r.conn.close();
    assert.ok(Date.now() - started >= 100);
    release();
  }, { streamIdleTimeoutMs: 150 });
});

Deno.test("stream server: a port-forward pair left incomplete is reported on its error stream", async () => {
  await withServer(new FakeRuntime("", 0), async (s) => {
    const url = s.getPortForward({ podSandboxId: "p1", port: [80] });
    const r = await request(url, upgrade("portforward.k8s.io"));
    const c = new SpdyClient(r.conn, r.rest);
    const err = await c.open({ streamType: "error", port: "80", requestID: "5" });
    assert.ok(await c.readUntil(finished(err)));
    r.conn.closeWrite();
    const got = await c.readAll();
    r.conn.close();
    assert.equal(dataOf(got, err), "timed out waiting for streams of request 5");
    assert.ok(got.some((f) => f.type === "data" && f.streamId === err && f.flags === 1));
  }, { streamCreationTimeoutMs: 100 });
});
