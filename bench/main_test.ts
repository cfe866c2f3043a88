import assert from "node:assert/strict";
import { parseBenchArgs, WORKLOADS } from "./main.ts";

Deno.test("parseBenchArgs reads --quick, --out and --only, and rejects the unknown", () => {
  assert.deepEqual(parseBenchArgs([], "/r"), { quick: false, out: "/r", only: null });
  assert.deepEqual(parseBenchArgs(["--quick", "--out", "/x", "--only", "1,7"], "/r"), {
    quick: true,
    out: "/x",
    only: [1, 7],
  });
  assert.equal(parseBenchArgs(["--out=/y"], "/r").out, "/y");
  assert.throws(() => parseBenchArgs(["--out"], "/r"), /--out needs a value/);
  assert.throws(() => parseBenchArgs(["--only", "10"], "/r"), /unknown workload 10/);
  assert.throws(() => parseBenchArgs(["--fast"], "/r"), /unknown argument --fast/);
});

Deno.test("workloads are numbered 1..9 in order", () => {
  assert.deepEqual(WORKLOADS.map((w) => w.id), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
});
