import assert from "node:assert/strict";
import { figure, isMeasured, measured, notMeasured, quantile } from "./figures.ts";

Deno.test("quantile interpolates between ranks and rejects no values", () => {
  assert.equal(quantile([3, 1, 2], 0.5), 2);
  assert.equal(quantile([1, 2, 3, 4], 0.5), 2.5);
  assert.ok(Math.abs(quantile([10, 20, 30, 40, 50, 60, 70, 80, 90, 100], 0.9) - 91) < 1e-9);
  assert.equal(quantile([7], 0.9), 7);
  assert.throws(() => quantile([], 0.5), RangeError);
});

Deno.test("figure computes the ratio of medians and judges the target in its direction", () => {
  const base = {
    workload: "w",
    metric: "m",
    unit: "ms",
    berthLabel: "b",
    containerdLabel: "c",
  };
  const lower = figure({
    ...base,
    better: "lower",
    berth: measured([50, 60, 70]),
    containerd: measured([100, 100, 100]),
    runc: measured([20]),
    target: { op: "<=", value: 0.75 },
  });
  assert.equal(lower.ratio, 0.6);
  assert.equal(lower.ratioRunc, 3);
  assert.equal(lower.met, true);

  const higher = figure({
    ...base,
    better: "higher",
    berth: measured([900]),
    containerd: measured([1000]),
    target: { op: ">=", value: 1 },
  });
  assert.equal(higher.met, false);

  const na = figure({
    ...base,
    better: "lower",
    berth: notMeasured("not built"),
    containerd: measured([1]),
    target: { op: "<=", value: 1 },
  });
  assert.equal(na.ratio, null);
  assert.equal(na.met, null);
  assert.ok(!isMeasured(na.berth));
});

Deno.test("notMeasured keeps a multi-line tool error on one line, bounded", () => {
  assert.equal(notMeasured("ctr: failed\n  shim said: no\n").na, "ctr: failed shim said: no");
  assert.equal(notMeasured("").na, "no reason given");
  assert.ok(notMeasured("x".repeat(1000)).na.length <= 300);
});
