import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Echo, EchoRequestSchema } from "../gen/berth/testing/v1/echo_pb.ts";
import { connect } from "./client.ts";
import { serviceClient } from "./stubs.ts";
import { TTRPC_NAMESPACE_KEY } from "../namespaces/mod.ts";
import { startEcho } from "./fixture_test.ts";

function hasCode(code: Code, message?: RegExp) {
  return (err: unknown) => {
    assert.ok(err instanceof BerthError, `expected a BerthError, got ${err}`);
    assert.equal(Code[err.code], Code[code], err.message);
    if (message) assert.match(err.message, message);
    return true;
  };
}

Deno.test("unary call: typed stub, metadata, namespace, deadline travel to the handler", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo, {
      defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: "ns1" } },
    });
    const r = await echo.say({ text: "hi", blob: new Uint8Array([1, 2]) }, {
      metadata: { "X-Trace": ["a", "b"] },
      timeoutMs: 5000,
    });
    assert.equal(r.text, "hi");
    assert.deepEqual(r.blob, new Uint8Array([1, 2]));
    assert.deepEqual(r.metadata, [
      "containerd-namespace-ttrpc=ns1",
      "deadline-in-ms=5000",
      "x-trace=a",
      "x-trace=b",
    ]);
    // Without per-call options the defaults alone go out.
    assert.deepEqual((await echo.say({ text: "x" })).metadata, ["containerd-namespace-ttrpc=ns1"]);
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("1000 concurrent calls on one connection all get their own answer", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const calls = Array.from(
      { length: 1000 },
      (_, i) =>
        echo.say({ text: `m${i}`, delayMs: i % 7 === 0 ? 1 + (i % 13) : 0 }).then((r) => r.text),
    );
    const texts = await Promise.all(calls);
    texts.forEach((t, i) => assert.equal(t, `m${i}`));
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("deadline: the client gives up on time and the handler's signal aborts", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const t0 = performance.now();
    await assert.rejects(
      echo.say({ text: "slow", delayMs: 5000 }, { timeoutMs: 100 }),
      hasCode(Code.DeadlineExceeded),
    );
    const took = performance.now() - t0;
    // Not early, and before the handler's answer (order, not a time limit).
    assert.ok(took >= 95, `gave up after ${took} ms, before the 100 ms deadline`);
    assert.ok(!srv.observed.finished.includes("slow"), "the call ended before its handler did");
    // The server saw the same deadline and aborted the handler.
    for (let i = 0; i < 50 && srv.observed.aborted.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(srv.observed.aborted[0]?.text, "slow");
    assert.ok(srv.observed.aborted[0].reason instanceof BerthError);
    assert.equal((srv.observed.aborted[0].reason as BerthError).code, Code.DeadlineExceeded);
    // The connection is still fine afterwards.
    assert.equal((await echo.say({ text: "after" }, { timeoutMs: 1000 })).text, "after");
    await assert.rejects(echo.say({ text: "x" }, { timeoutMs: -1 }), hasCode(Code.InvalidArgument));
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("cancellation by AbortSignal fails only that call, with Canceled", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const ac = new AbortController();
    const slow = echo.say({ text: "slow", delayMs: 300 }, { signal: ac.signal });
    const other = echo.say({ text: "other", delayMs: 50 });
    setTimeout(() => ac.abort(), 20);
    await assert.rejects(slow, hasCode(Code.Canceled));
    assert.equal((await other).text, "other");
    await assert.rejects(echo.say({ text: "x" }, { signal: ac.signal }), hasCode(Code.Canceled));
    // Let the server finish the abandoned call so its late answer is dropped cleanly.
    await new Promise((r) => setTimeout(r, 350));
    assert.equal((await echo.say({ text: "again" })).text, "again");
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("unknown service or method, and methods left out of the impl, are Unimplemented", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const req = toBinary(EchoRequestSchema, create(EchoRequestSchema, { text: "x" }));
    await assert.rejects(
      client.call("no.such.Service", "Say", req),
      hasCode(Code.Unimplemented, /no\.such\.Service/),
    );
    await assert.rejects(
      client.call("berth.testing.v1.Echo", "Shout", req),
      hasCode(Code.Unimplemented, /Shout/),
    );
    assert.ok((await client.call("berth.testing.v1.Echo", "Say", req)).length > 0);
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("handler errors reach the caller with their code and message", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    await assert.rejects(
      echo.say({ text: 'container "c1": not found', failCode: Code.NotFound }),
      hasCode(Code.NotFound, /^container "c1": not found$/),
    );
    await assert.rejects(
      echo.say({ text: "busy", failCode: Code.FailedPrecondition }),
      hasCode(Code.FailedPrecondition, /^busy$/),
    );
    await assert.rejects(
      echo.say({ text: "plain-error" }),
      hasCode(Code.Unknown, /something broke/),
    );
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("server going away fails every pending call at once with Unavailable", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const pending = Array.from(
      { length: 20 },
      (_, i) => echo.say({ text: `p${i}`, delayMs: 10_000 }),
    );
    const outcomes = Promise.allSettled(pending);
    await new Promise((r) => setTimeout(r, 50));
    await srv.server.close();
    const results = await outcomes;
    // They failed because the server went, not because their handlers answered.
    assert.deepEqual(srv.observed.finished, [], "pending calls fail before any handler finishes");
    for (const r of results) {
      assert.equal(r.status, "rejected");
      hasCode(Code.Unavailable)((r as PromiseRejectedResult).reason);
    }
    await client.done;
    assert.ok(client.closed);
    await assert.rejects(echo.say({ text: "late" }), hasCode(Code.Unavailable));
  } finally {
    client.close();
    await srv.stop();
  }
});

Deno.test("closing the client fails its pending calls; connecting to nothing is Unavailable", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    const p = echo.say({ text: "p", delayMs: 5000 });
    await new Promise((r) => setTimeout(r, 20));
    client.close();
    await assert.rejects(p, hasCode(Code.Unavailable, /client closed/));
    await client.done;
  } finally {
    await srv.stop();
  }
  await assert.rejects(connect(srv.path), hasCode(Code.Unavailable, /cannot connect/));
});

Deno.test("oversized requests are refused locally with ResourceExhausted", async () => {
  const srv = await startEcho();
  const client = await connect(srv.path);
  try {
    const echo = serviceClient(client, Echo);
    await assert.rejects(
      echo.say({ blob: new Uint8Array(5 << 20) }),
      hasCode(Code.ResourceExhausted),
    );
    assert.equal((await echo.say({ text: "ok" })).text, "ok");
  } finally {
    client.close();
    await srv.stop();
  }
});
