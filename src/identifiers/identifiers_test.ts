import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { isValidIdentifier, MAX_IDENTIFIER_LENGTH, validateIdentifier } from "./mod.ts";

Deno.test("identifiers: accepts containerd-valid ids", () => {
  for (
    const id of [
      "a",
      "default",
      "k8s.io",
      "redis-1",
      "a_b.c-d",
      "0",
      "A".repeat(MAX_IDENTIFIER_LENGTH),
    ]
  ) {
    validateIdentifier(id);
    assert.ok(isValidIdentifier(id), id);
  }
});

Deno.test("identifiers: rejects empty, long, separators and path tricks", () => {
  const bad = [
    "",
    "A".repeat(MAX_IDENTIFIER_LENGTH + 1),
    "a/b",
    "..",
    "a..b",
    ".a",
    "a.",
    "-a",
    "a-",
    "a--b",
    "a b",
    "a:b",
    "ä",
    "/",
    "a\x00b",
  ];
  for (const id of bad) {
    assert.ok(!isValidIdentifier(id), JSON.stringify(id));
    assert.throws(() => validateIdentifier(id, "namespace"), (e) => {
      assert.ok(isCode(e, Code.InvalidArgument), String(e));
      assert.match((e as Error).message, /namespace/);
      return true;
    });
  }
});
