import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import type { MethodEntry } from "../rpc/mod.ts";
import { cpuProfile, DebugEndpoint, InFlight } from "./mod.ts";

Deno.test("debug: calls are listed while in flight, oldest first, with their age", async () => {
  const inflight = new InFlight();
  const e = (method: string) => ({ service: "s.v1.S", method, kind: "unary" }) as MethodEntry;
  const endA = inflight.observer("grpc")(e("A"));
  await new Promise((r) => setTimeout(r, 20));
  const endB = inflight.observer("ttrpc")(e("B"));
  const list = inflight.list();
  assert.deepEqual(list.map((c) => `${c.transport} ${c.service}/${c.method}`), [
    "grpc s.v1.S/A",
    "ttrpc s.v1.S/B",
  ]);
  assert.ok(list[0].ageSeconds >= 0.015 && list[0].ageSeconds >= list[1].ageSeconds);
  endA(Code.OK);
  assert.deepEqual(inflight.list().map((c) => c.method), ["B"]);
  endB(Code.Canceled);
  assert.deepEqual(inflight.list(), []);
});

Deno.test("debug: a CPU profile's length is bounded", async () => {
  for (const s of [0, -1, NaN, 301]) {
    await assert.rejects(cpuProfile(s), (e) => isCode(e, Code.InvalidArgument), String(s));
  }
});

Deno.test("debug: the socket is private, refuses a second server, answers JSON and goes away", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-debug-" });
  const path = `${dir}/sub/debug.sock`;
  const ep = new DebugEndpoint();
  await ep.listen(path, 0, 0);
  try {
    assert.equal((await Deno.stat(path)).mode! & 0o777, 0o600);
    assert.equal((await Deno.stat(`${dir}/sub`)).mode! & 0o777, 0o700);
    await assert.rejects(
      new DebugEndpoint().listen(path, 0, 0),
      (e) => isCode(e, Code.AlreadyExists),
    );
    const client = Deno.createHttpClient({ proxy: { transport: "unix", path } });
    try {
      const end = ep.inflight.observer("grpc")(
        { service: "s", method: "M", kind: "unary" } as MethodEntry,
      );
      const r = await fetch("http://berth/debug/requests", { client });
      assert.deepEqual((await r.json()).requests.map((c: { method: string }) => c.method), ["M"]);
      end(Code.OK);
      const bad = await fetch("http://berth/debug/profile?seconds=0", { client });
      assert.equal(bad.status, 400);
      assert.equal((await bad.json()).code, Code.InvalidArgument);
      const none = await fetch("http://berth/nope", { client });
      assert.equal(none.status, 404);
      await none.body?.cancel();
    } finally {
      client.close();
    }
  } finally {
    await ep.close();
  }
  await assert.rejects(Deno.stat(path), Deno.errors.NotFound);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("debug: closing the endpoint ends a CPU profile in progress with what it has", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-debug-" });
  const path = `${dir}/debug.sock`;
  const ep = new DebugEndpoint();
  await ep.listen(path, 0, 0);
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path } });
  try {
    const answer = fetch("http://berth/debug/profile?seconds=120", { client });
    await new Promise((r) => setTimeout(r, 300));
    await ep.close();
    const profile = await (await answer).json();
    assert.ok(Array.isArray(profile.nodes));
    assert.ok(profile.endTime - profile.startTime < 60e6, "stopped long before the 120 s asked");
  } finally {
    client.close();
    await ep.close();
    await Deno.remove(dir, { recursive: true });
  }
});
