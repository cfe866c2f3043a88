import assert from "node:assert/strict";
import {
  bytesSize,
  formatTable,
  humanDuration,
  humanSize,
  labelsCell,
  NARROW,
  TABBED,
  WIDE,
} from "./output.ts";

Deno.test("output: tables laid out like Go's tabwriter", () => {
  // tabwriter.NewWriter(out, 1, 8, 1, ' ', 0) with "NAME\tLABELS\t" rows.
  assert.equal(
    formatTable([["NAME", "LABELS"], ["default", ""]], NARROW),
    "NAME    LABELS \ndefault        \n",
  );
  // minwidth 4, padding 4 (ctr containers ls).
  assert.equal(
    formatTable([["CONTAINER", "IMAGE", "RUNTIME"], ["c1", "-", "io.containerd.runc.v2"]], WIDE),
    "CONTAINER    IMAGE    RUNTIME                  \nc1           -        io.containerd.runc.v2    \n",
  );
  // The last cell of unterminated rows is not padded.
  assert.equal(formatTable([["A", "BB"], ["ccc", "d"]], NARROW, false), "A   BB\nccc d\n");
  // Tab padding rounds columns up to the tab width.
  assert.equal(
    formatTable([["DIGEST", "SIZE"], ["sha256:0123456789", "1 B"]], TABBED, false),
    "DIGEST\t\t\tSIZE\nsha256:0123456789\t1 B\n",
  );
  assert.equal(formatTable([], NARROW), "");
});

Deno.test("output: sizes and ages like go-units", () => {
  assert.equal(humanSize(4096), "4.096 kB");
  assert.equal(humanSize(12), "12 B");
  assert.equal(bytesSize(1060000), "1.011 MiB");
  assert.equal(bytesSize(0), "0 B");
  assert.equal(humanDuration(500), "Less than a second");
  assert.equal(humanDuration(5000), "5 seconds");
  assert.equal(humanDuration(90_000), "About a minute");
  assert.equal(humanDuration(3 * 3600_000), "3 hours");
});

Deno.test("output: label cells sorted, '-' when empty", () => {
  assert.equal(labelsCell({ b: "2", a: "1" }), "a=1,b=2");
  assert.equal(labelsCell({}), "-");
  assert.equal(labelsCell(undefined, ""), "");
});
