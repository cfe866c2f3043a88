import assert from "node:assert/strict";
import { parseGoDuration } from "./mod.ts";

Deno.test("parseGoDuration: units, sums and fractions", () => {
  assert.equal(parseGoDuration("500ms"), 500);
  assert.equal(parseGoDuration("1m30s"), 90_000);
  assert.equal(parseGoDuration("1.5h"), 5_400_000);
  assert.equal(parseGoDuration("0s"), 0);
  assert.equal(parseGoDuration("2us"), 0.002);
  assert.equal(parseGoDuration("3µs"), 0.003);
  assert.equal(parseGoDuration("1000000ns"), 1);
});

Deno.test("parseGoDuration: empty, bare numbers and trailing junk are not durations", () => {
  for (const bad of ["", "10", "0", "s", "1x", "1s ", " 1s", "1s2", "-1s", "1.s"]) {
    assert.equal(parseGoDuration(bad), undefined, JSON.stringify(bad));
  }
});
