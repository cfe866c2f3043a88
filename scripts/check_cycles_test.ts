import assert from "node:assert/strict";
import { cycles, folderGraph, folderOf } from "./check_cycles.ts";

const graph = (edges: Record<string, string[]>) =>
  new Map(Object.entries(edges).map(([k, v]) => [k, new Set(v)]));

Deno.test("check_cycles: finds file cycles, long and short, and nothing in a DAG", () => {
  assert.deepEqual(cycles(graph({ a: ["b"], b: ["c"], c: [] })), []);
  const found = cycles(graph({ a: ["b"], b: ["c"], c: ["a"], d: ["e"], e: ["d"], f: ["a"] }));
  assert.deepEqual(found.map((c) => c.join(" ")).sort(), ["a b c", "d e"]);
});

Deno.test("check_cycles: folders cycle when their files import each other's folder", () => {
  assert.equal(folderOf("src/shim/serve.ts"), "src/shim");
  assert.equal(folderOf("src/services/tasks/mod.ts"), "src/services/tasks");
  assert.equal(folderOf("src/services/service.ts"), "src/services");
  assert.equal(folderOf("ffi/libc.ts"), "ffi");
  assert.equal(folderOf("mod.ts"), ".");
  const files = graph({
    "src/a/x.ts": ["src/b/y.ts"],
    "src/b/y.ts": [],
    "src/b/z.ts": ["src/a/w.ts"],
    "src/a/w.ts": [],
  });
  assert.deepEqual(cycles(files), [], "no file cycle");
  assert.deepEqual(cycles(folderGraph(files)), [["src/a", "src/b"]]);
});
