import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Echo, EchoRequestSchema, EchoResponseSchema } from "../gen/berth/testing/v1/echo_pb.ts";
import { connect } from "./client.ts";
import { serviceClient } from "./stubs.ts";
import { startEcho } from "./fixture_test.ts";

async function* requests(
  texts: string[],
  failAt = -1,
): AsyncIterable<{ text: string; failCode?: number }> {
  for (let i = 0; i < texts.length; i++) {
    await Promise.resolve();
    yield i === failAt ? { text: texts[i], failCode: Code.InvalidArgument } : { text: texts[i] };
  }
}

Deno.test("server streaming: every message in order, then the end", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const got: number[] = [];
    for await (const m of echo.count({ text: "c", count: 500 })) got.push(m.index);
    assert.deepEqual(got, Array.from({ length: 500 }, (_, i) => i));
    const none: unknown[] = [];
    for await (const m of echo.count({ count: 0 })) none.push(m);
    assert.deepEqual(none, []);
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("server streaming: an error after some messages reaches the reader", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const got: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const m of echo.count({ text: "broken", count: 3, failCode: Code.DataLoss })) {
          got.push(m.index);
        }
      })(),
      (e: unknown) => e instanceof BerthError && e.code === Code.DataLoss && e.message === "broken",
    );
    assert.deepEqual(got, [0, 1, 2]);
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("server streaming: the reader leaving early does not disturb the connection", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    for await (const m of echo.count({ text: "x", count: 1000, delayMs: 1 })) {
      if (m.index === 2) break;
    }
    assert.equal((await echo.say({ text: "still here" })).text, "still here");
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("client streaming: all messages arrive, one answer comes back", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const r = await echo.join(requests(["a", "b", "c"]), { metadata: { k: "v" } });
    assert.equal(r.text, "a+b+c");
    assert.equal(r.index, 3);
    assert.deepEqual(r.metadata, ["k=v"]);
    const empty = await echo.join(requests([]));
    assert.equal(empty.index, 0);
    await assert.rejects(
      echo.join(requests(["a", "bad", "c"], 1)),
      (e: unknown) =>
        e instanceof BerthError && e.code === Code.InvalidArgument && e.message === "bad",
    );
    const many = Array.from({ length: 2000 }, (_, i) => `${i}`);
    assert.equal((await echo.join(requests(many))).index, 2000);
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("bidi streaming: answers interleave with requests", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    // Send the next request only after the previous answer: proves real interleaving.
    let next: (v: string | null) => void = () => {};
    const inbox = async function* () {
      yield { text: "one" };
      for (;;) {
        const t = await new Promise<string | null>((r) => next = r);
        if (t === null) return;
        yield { text: t };
      }
    };
    const out: string[] = [];
    for await (const m of echo.chat(inbox())) {
      out.push(m.text);
      next(out.length < 3 ? `n${out.length}` : null);
    }
    assert.deepEqual(out, ["ONE", "N1", "N2"]);
    await assert.rejects(
      (async () => {
        for await (const _ of echo.chat(requests(["a", "b"], 1)));
      })(),
      (e: unknown) => e instanceof BerthError && e.code === Code.InvalidArgument,
    );
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("low-level streams: raw bytes, send after closeSend refused, deadline on a stream", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const enc = (text: string) => toBinary(EchoRequestSchema, create(EchoRequestSchema, { text }));
    const s = client.stream("berth.testing.v1.Echo", "Chat", "bidi_streaming", undefined);
    await s.send(enc("x"));
    s.closeSend();
    await assert.rejects(s.send(enc("y")), /after closeSend/);
    const got = [];
    for await (const b of s) got.push(fromBinary(EchoResponseSchema, b).text);
    assert.deepEqual(got, ["X"]);
    const slow = client.stream(
      "berth.testing.v1.Echo",
      "Count",
      "server_streaming",
      toBinary(EchoRequestSchema, create(EchoRequestSchema, { count: 100, delayMs: 100 })),
      { timeoutMs: 150 },
    );
    await assert.rejects(
      (async () => {
        for await (const _ of slow);
      })(),
      (e: unknown) => e instanceof BerthError && e.code === Code.DeadlineExceeded,
    );
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("streams in flight fail with Unavailable when the server closes", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const reading = (async () => {
      for await (const _ of echo.count({ count: 1000, delayMs: 50 }));
    })();
    let release = () => {};
    const gate = new Promise<void>((r) => release = r);
    const joining = echo.join((async function* () {
      yield { text: "a" };
      await gate; // keeps the request stream open until the test ends
    })());
    await new Promise((r) => setTimeout(r, 100));
    // Watch both outcomes before closing: they fail while close() runs.
    const outcomes = Promise.allSettled([reading, joining]);
    await srv.server.close();
    for (const r of await outcomes) {
      assert.equal(r.status, "rejected");
      const e = (r as PromiseRejectedResult).reason;
      assert.ok(e instanceof BerthError && e.code === Code.Unavailable, String(e));
    }
    release();
  } finally {
    client.close();
    await srv.stop();
  }
});
