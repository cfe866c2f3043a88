import assert from "node:assert/strict";
import { figure, measured, notMeasured } from "./figures.ts";
import { formatValue, markdownTable, type RunInfo, shortDate, svgChart } from "./report.ts";

const info: RunInfo = {
  date: "2026-01-02T03:04:05.678Z",
  mode: "quick",
  machine: { cores: 2, memoryGiB: 24, kernel: "6.1", cpu: "test cpu" },
  versions: { containerd: "1.6.20" },
};

const figures = [
  figure({
    workload: "1. run --rm, sequential",
    metric: "latency",
    unit: "ms",
    better: "lower",
    berthLabel: "berth",
    containerdLabel: "containerd",
    berth: measured([200, 220]),
    containerd: measured([300, 320]),
    runc: measured([100]),
    target: { op: "<=", value: 0.75 },
  }),
  figure({
    workload: '4. ttrpc <fast> & "quoted"',
    metric: "throughput",
    unit: "calls/s",
    better: "higher",
    berthLabel: "berth",
    containerdLabel: "go",
    berth: notMeasured("server | not built"),
    containerd: measured([12345.6]),
    target: { op: ">=", value: 1 },
  }),
];

Deno.test("markdownTable shows medians, ratios, verdicts and numbered n/a reasons", () => {
  const md = markdownTable(figures, info);
  assert.match(md, /2026-01-02 03:04 UTC/);
  assert.match(
    md,
    /\| 1\. run --rm, sequential \| ms \| 210 \/ 218 \| 310 \/ 318 \| 100 \/ 100 \| 0\.68x \| 2\.10x \| <= 0\.75x \| met \|/,
  );
  assert.match(md, /n\/a \[1\]/);
  assert.match(md, /\[1\] server \\\| not built/);
  assert.match(md, /Targets: 1 met, 0 not met, 1 not measured \(of 2\)\./);
});

Deno.test("svgChart is one well-formed svg with a 1.0 line, target markers and escaped labels", () => {
  const svg = svgChart(figures, info);
  assert.ok(svg.startsWith("<svg ") && svg.trimEnd().endsWith("</svg>"));
  assert.match(svg, /stroke-dasharray/); // the 1.0 line
  assert.equal((svg.match(/<path d="M/g) ?? []).length, 2); // one target marker per figure with a target
  assert.match(svg, /&lt;fast&gt; &amp; &quot;quoted&quot;/);
  assert.ok(!svg.includes("<fast>"));
  assert.match(svg, /0\.68x/);
  assert.match(svg, />n\/a</);
});

Deno.test("formatValue and shortDate", () => {
  assert.equal(formatValue(12345.6, "calls/s"), "12,346");
  assert.equal(formatValue(3.456, "MiB"), "3.46");
  assert.equal(formatValue(123.4, "ms"), "123");
  assert.equal(formatValue(12.34, "ms"), "12.3");
  assert.equal(shortDate("2026-01-02T03:04:05.678Z"), "2026-01-02 03:04 UTC");
});
