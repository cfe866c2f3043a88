import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import type { MethodEntry } from "../ttrpc/mod.ts";
import { cpuProfile, InFlight } from "./mod.ts";

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
