import assert from "node:assert/strict";
import { readTtrpcResult } from "./ttrpc.ts";

Deno.test("readTtrpcResult reads nested objects keyed by server and in-flight count", () => {
  const found = readTtrpcResult({
    berth: { "1": 9000, "32": [30000, 31000] },
    go: { "1": 8000, "32": 25000 },
  });
  assert.deepEqual(found.get("berth@1"), [9000]);
  assert.deepEqual(found.get("berth@32"), [30000, 31000]);
  assert.deepEqual(found.get("go@1"), [8000]);
  assert.deepEqual(found.get("go@32"), [25000]);
});

Deno.test("readTtrpcResult reads self-describing records and JSON text", () => {
  const json = JSON.stringify([
    { server: "berth", inflight: 1, callsPerSec: 11 },
    { server: "berth", inflight: 32, callsPerSec: 12 },
    { server: "go", inflight: 1, callsPerSec: 13 },
    { server: "go", inflight: 32, callsPerSec: 14 },
  ]);
  const found = readTtrpcResult(json);
  assert.deepEqual([...found.entries()].sort(), [
    ["berth@1", [11]],
    ["berth@32", [12]],
    ["go@1", [13]],
    ["go@32", [14]],
  ]);
});

Deno.test("readTtrpcResult passes a side's reason through and ignores unrelated numbers", () => {
  const found = readTtrpcResult({
    berth: { inflight1: "server not built", inflight32: "server not built" },
    other: 5,
  });
  assert.equal(found.get("berth@1"), "server not built");
  assert.equal(found.has("go@1"), false);
  assert.equal(found.size, 2);
});
