import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { MAX_LABEL_SIZE, validateLabel, validateLabels } from "./mod.ts";

Deno.test("labels: accepts up to the limit", () => {
  validateLabel("k", "v".repeat(MAX_LABEL_SIZE - 1));
  validateLabels({ a: "b", "containerd.io/gc.root": "" });
  validateLabels(undefined);
});

Deno.test("labels: rejects oversized pairs and empty keys", () => {
  const invalid = (e: unknown) => isCode(e, Code.InvalidArgument);
  assert.throws(() => validateLabel("k", "v".repeat(MAX_LABEL_SIZE)), invalid);
  // Size counts UTF-8 bytes, not UTF-16 units.
  assert.throws(() => validateLabel("k", "é".repeat(MAX_LABEL_SIZE / 2)), invalid);
  assert.throws(() => validateLabels({ ok: "1", bad: "x".repeat(5000) }), invalid);
  assert.throws(() => validateLabel("", "v"), invalid);
});
