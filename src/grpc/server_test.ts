import assert from "node:assert/strict";
import http2 from "node:http2";
import net from "node:net";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Echo } from "../gen/berth/testing/v1/echo_pb.ts";
import { echoImpl, type Observed } from "../ttrpc/fixture_test.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import { EchoRequestSchema } from "../gen/berth/testing/v1/echo_pb.ts";
import { GrpcClient } from "./client.ts";
import { frameMessage, gzipMessage } from "./framing.ts";
import { GrpcServer, type GrpcServerOptions } from "./server.ts";

async function withEcho(
  fn: (client: GrpcClient, observed: Observed, path: string) => Promise<void>,
  opts: GrpcServerOptions = {},
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-grpc-" });
  const path = `${dir}/echo.sock`;
  const observed: Observed = { aborted: [], finished: [] };
  const server = new GrpcServer(opts);
  server.register(Echo, echoImpl(observed));
  await server.listen(path);
  const client = new GrpcClient(path, { metadata: { "containerd-namespace": "ns1" } });
  try {
    await fn(client, observed, path);
  } finally {
    await client.close();
    await server.shutdown({ timeoutMs: 1000 });
    await Deno.remove(dir, { recursive: true });
  }
}

const isCode = (code: Code) => (e: unknown) => e instanceof BerthError && e.code === code;

/** One Echo/Say request over a raw node:http2 session: the response headers and trailers, merged. */
async function rawSay(
  path: string,
  extra: Record<string, string>,
  body: Uint8Array,
): Promise<http2.IncomingHttpHeaders> {
  const session = http2.connect("http://localhost", { createConnection: () => net.connect(path) });
  session.on("error", () => {});
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/berth.testing.v1.Echo/Say",
        "content-type": "application/grpc",
        "te": "trailers",
        ...extra,
      });
      const seen: http2.IncomingHttpHeaders = {};
      req.on("response", (h) => Object.assign(seen, h));
      req.on("trailers", (h) => Object.assign(seen, h));
      req.on("data", () => {});
      req.on("error", reject);
      req.on("close", () => resolve(seen));
      req.end(body);
    });
  } finally {
    session.destroy();
  }
}

const sayBytes = (text: string, blob = new Uint8Array(0)) =>
  toBinary(EchoRequestSchema, create(EchoRequestSchema, { text, blob }));

Deno.test("grpc: unary calls carry metadata and a deadline; errors keep code and message", async () => {
  await withEcho(async (client, _obs, path) => {
    const res = await client.unary(Echo.method.say, { text: "hi" }, {
      metadata: { "x-extra": "1" },
      timeoutMs: 5000,
    });
    assert.equal(res.text, "hi");
    assert.ok(res.metadata.includes("containerd-namespace=ns1"), res.metadata.join(","));
    assert.ok(res.metadata.includes("x-extra=1"));
    assert.ok(res.metadata.some((m) => m.startsWith("deadline-in-ms=")));
    assert.ok(!res.metadata.some((m) => m.startsWith(":") || m.startsWith("content-type")));
    await assert.rejects(
      client.unary(Echo.method.say, { text: "gone 100% \n", failCode: Code.NotFound }),
      (e) => isCode(Code.NotFound)(e) && (e as Error).message === "gone 100% \n",
    );
    await assert.rejects(
      client.unary(Echo.method.say, { text: "plain-error" }),
      isCode(Code.Unknown),
    );
    // A huge error message arrives cut to a bounded trailer, with its code.
    await assert.rejects(
      client.unary(Echo.method.say, { text: "é".repeat(200_000), failCode: Code.NotFound }),
      (e) =>
        isCode(Code.NotFound)(e) && (e as Error).message.length < 8192 &&
        /^(é)+\.\.\.$/.test((e as Error).message),
    );
    // The socket is private.
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
  });
});

Deno.test("grpc: a deadline that passes ends the call with DeadlineExceeded and aborts the handler", async () => {
  await withEcho(async (client, observed, path) => {
    // A raw request, so that the server's status is seen, not the client's own timer.
    const session = http2.connect("http://localhost", {
      createConnection: () => net.connect(path),
    });
    session.on("error", () => {});
    const status = await new Promise<string | undefined>((resolve) => {
      const req = session.request({
        ":method": "POST",
        ":path": "/berth.testing.v1.Echo/Say",
        "content-type": "application/grpc",
        "te": "trailers",
        "grpc-timeout": "100m",
      });
      let st: string | undefined;
      req.on("response", (h) => st ??= h["grpc-status"] as string | undefined);
      req.on("trailers", (h) => st ??= h["grpc-status"] as string | undefined);
      req.on("close", () => resolve(st));
      req.on("data", () => {});
      // text "slow", delay_ms 5000
      req.end(new Uint8Array([0, 0, 0, 0, 9, 10, 4, 115, 108, 111, 119, 16, 136, 39]));
    });
    session.destroy();
    assert.equal(status, String(Code.DeadlineExceeded));
    for (let i = 0; i < 50 && observed.aborted.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(observed.aborted.length, 1);
    // The connection's other calls are unaffected.
    assert.equal((await client.unary(Echo.method.say, { text: "after" })).text, "after");
  });
});

Deno.test("grpc: server, client and bidi streaming", async () => {
  await withEcho(async (client) => {
    const counted = [];
    for await (const m of client.stream(Echo.method.count, [{ text: "c", count: 5 }])) {
      counted.push(m.index);
    }
    assert.deepEqual(counted, [0, 1, 2, 3, 4]);

    // A server-streaming call without its request is refused, not left hanging.
    await assert.rejects(async () => {
      for await (const _ of client.stream(Echo.method.count, [])) { /* none */ }
    }, isCode(Code.Internal));

    let answer;
    for await (
      const m of client.stream(Echo.method.join, [{ text: "a" }, { text: "b" }, { text: "c" }])
    ) {
      answer = m;
    }
    assert.equal(answer?.text, "a+b+c");
    assert.equal(answer?.index, 3);

    async function* talk() {
      for (const t of ["x", "y", "z"]) {
        yield { text: t };
        await new Promise((r) => setTimeout(r, 5));
      }
    }
    const said = [];
    for await (const m of client.stream(Echo.method.chat, talk())) said.push(m.text);
    assert.deepEqual(said, ["X", "Y", "Z"]);

    // A status after some messages arrives after them.
    const got: number[] = [];
    await assert.rejects(async () => {
      for await (
        const m of client.stream(Echo.method.count, [{
          text: "late",
          count: 2,
          failCode: Code.Aborted,
        }])
      ) {
        got.push(m.index);
      }
    }, isCode(Code.Aborted));
    assert.deepEqual(got, [0, 1]);

    // Many messages, more than the server's queue, with back-pressure.
    async function* many() {
      for (let i = 0; i < 500; i++) yield { text: String(i % 10), blob: new Uint8Array(4096) };
    }
    let big;
    for await (const m of client.stream(Echo.method.join, many())) big = m;
    assert.equal(big?.index, 500);
  });
});

Deno.test("grpc: unknown services and methods are Unimplemented; oversized requests ResourceExhausted", async () => {
  await withEcho(async (client) => {
    const fake = { ...Echo.method.say, name: "Nope" } as typeof Echo.method.say;
    await assert.rejects(
      client.unary(fake, { text: "x" }),
      (e) => isCode(Code.Unimplemented)(e) && /Nope/.test((e as Error).message),
    );
    const other = {
      ...Echo.method.say,
      parent: { ...Echo, typeName: "no.Such" },
    } as unknown as typeof Echo.method.say;
    await assert.rejects(client.unary(other, { text: "x" }), isCode(Code.Unimplemented));
    await assert.rejects(
      client.unary(Echo.method.say, { text: "big", blob: new Uint8Array(2048) }),
      isCode(Code.ResourceExhausted),
    );
    assert.equal((await client.unary(Echo.method.say, { text: "small" })).text, "small");
  }, { maxRecvMessageSize: 1024 });
});

Deno.test("grpc: shutdown lets a call in flight finish, then refuses new connections", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-grpc-" });
  const path = `${dir}/echo.sock`;
  const observed: Observed = { aborted: [], finished: [] };
  const server = new GrpcServer();
  server.register(Echo, echoImpl(observed));
  await server.listen(path);
  const client = new GrpcClient(path);
  try {
    assert.equal((await client.unary(Echo.method.say, { text: "warm" })).text, "warm");
    const slow = client.unary(Echo.method.say, { text: "slow", delayMs: 200 });
    await new Promise((r) => setTimeout(r, 50));
    await server.shutdown({ timeoutMs: 3000 });
    assert.equal((await slow).text, "slow");
    const late = new GrpcClient(path);
    await assert.rejects(late.unary(Echo.method.say, { text: "late" }), isCode(Code.Unavailable));
    await late.close();
  } finally {
    await client.close();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("grpc: a client that sends GOAWAY after 300 calls does not hurt the server", async () => {
  // Deno's node:http2 server aborted the process here (denoland/deno#36788).
  await withEcho(async (client, _obs, path) => {
    for (let round = 0; round < 2; round++) {
      const c = new GrpcClient(path);
      for (let i = 0; i < 300; i++) await c.unary(Echo.method.say, { text: String(i) });
      await c.close();
    }
    assert.equal((await client.unary(Echo.method.say, { text: "after" })).text, "after");
  });
});

Deno.test("grpc: 8 MiB each way flows through the windows; 200 calls in flight on one connection", async () => {
  await withEcho(async (client) => {
    const blob = new Uint8Array(8 << 20);
    for (let i = 0; i < blob.length; i += 4093) blob[i] = i & 0xff;
    const res = await client.unary(Echo.method.say, { text: "big", blob });
    assert.equal(res.blob.length, blob.length);
    assert.deepEqual(res.blob, blob);
    const many = await Promise.all(
      Array.from(
        { length: 200 },
        (_, i) => client.unary(Echo.method.say, { text: `c${i}`, delayMs: 50 }),
      ),
    );
    assert.deepEqual(many.map((r) => r.text), Array.from({ length: 200 }, (_, i) => `c${i}`));
  });
});

Deno.test("grpc: a client's RST_STREAM aborts the handler's signal", async () => {
  await withEcho(async (client, observed) => {
    const ctrl = new AbortController();
    const call = client.unary(Echo.method.say, { text: "cancel-me", delayMs: 5000 }, {
      signal: ctrl.signal,
    });
    await new Promise((r) => setTimeout(r, 100));
    ctrl.abort();
    await assert.rejects(call, isCode(Code.Canceled));
    for (let i = 0; i < 100 && observed.aborted.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(observed.aborted.length, 1);
    assert.equal(observed.aborted[0].text, "cancel-me");
    assert.ok(isCode(Code.Canceled)(observed.aborted[0].reason));
  });
});

Deno.test("grpc: gzip-compressed requests are inflated, within the size limit; other encodings are Unimplemented", async () => {
  await withEcho(async (client, _obs, path) => {
    const blob = new Uint8Array(20_000).fill(0x61);
    const res = await client.unary(Echo.method.say, { text: "zipped", blob }, { gzip: true });
    assert.equal(res.text, "zipped");
    assert.deepEqual(res.blob, blob);
    async function* parts() {
      for (const t of ["a", "b", "c"]) yield { text: t };
    }
    let joined;
    for await (const m of client.stream(Echo.method.join, parts(), { gzip: true })) joined = m;
    assert.equal(joined?.text, "a+b+c");

    // Every answer says what the server accepts, and answers identity.
    const ok = await rawSay(
      path,
      { "grpc-encoding": "gzip", "grpc-accept-encoding": "gzip" },
      frameMessage(gzipMessage(sayBytes("hi")), true),
    );
    assert.equal(ok["grpc-status"], "0");
    assert.equal(ok["grpc-accept-encoding"], "gzip");
    assert.equal(ok["grpc-encoding"], undefined);
    // A plain message on a gzip stream is fine too (the flag says which).
    const plain = await rawSay(path, { "grpc-encoding": "gzip" }, frameMessage(sayBytes("p")));
    assert.equal(plain["grpc-status"], "0");

    // An encoding berth does not know: Unimplemented, naming what it accepts.
    const br = await rawSay(path, { "grpc-encoding": "br" }, frameMessage(sayBytes("x"), true));
    assert.equal(br["grpc-status"], String(Code.Unimplemented));
    assert.equal(br["grpc-accept-encoding"], "gzip");
    assert.match(String(br["grpc-message"]), /br/);
    // A compressed flag without an encoding (or with identity) is Internal.
    const noEncoding: Record<string, string>[] = [{}, { "grpc-encoding": "identity" }];
    for (const extra of noEncoding) {
      const bad = await rawSay(path, extra, frameMessage(gzipMessage(sayBytes("x")), true));
      assert.equal(bad["grpc-status"], String(Code.Internal), JSON.stringify(extra));
    }
    // A small message that inflates past max_recv_message_size is refused.
    const bomb = gzipMessage(sayBytes("bomb", new Uint8Array(4 << 20)));
    assert.ok(bomb.length < 64 << 10);
    const big = await rawSay(path, { "grpc-encoding": "gzip" }, frameMessage(bomb, true));
    assert.equal(big["grpc-status"], String(Code.ResourceExhausted));
    assert.equal((await client.unary(Echo.method.say, { text: "after" })).text, "after");
  }, { maxRecvMessageSize: 64 << 10 });
});

Deno.test("grpc: an observer hears of each call's start and its end with the status code, once", async () => {
  const seen: string[] = [];
  await withEcho(async (client, _observed, path) => {
    await client.unary(Echo.method.say, { text: "a" });
    await assert.rejects(
      client.unary(Echo.method.say, { text: "no", failCode: Code.NotFound }),
      isCode(Code.NotFound),
    );
    const counted: string[] = [];
    for await (const m of client.stream(Echo.method.count, [{ text: "c", count: 2 }])) {
      counted.push(m.text);
    }
    assert.deepEqual(counted, ["c", "c"]);
    // A call past its deadline ends as DeadlineExceeded (the handler is still sleeping).
    await rawSay(
      path,
      { "grpc-timeout": "50m" },
      frameMessage(
        toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: "slow", delayMs: 5000 })),
      ),
    );
    for (let i = 0; i < 100 && seen.length < 8; i++) await new Promise((r) => setTimeout(r, 10));
  }, {
    observe: (entry) => {
      seen.push(`start ${entry.method} ${entry.kind}`);
      return (code) => seen.push(`end ${entry.method} ${Code[code]}`);
    },
  });
  assert.deepEqual(seen, [
    "start Say unary",
    "end Say OK",
    "start Say unary",
    "end Say NotFound",
    "start Count server_streaming",
    "end Count OK",
    "start Say unary",
    "end Say DeadlineExceeded",
  ]);
});
