import assert from "node:assert/strict";
import { BerthError, Code, notFound } from "../errdefs/mod.ts";
import { describeError, EXIT_STATUS, exitStatusFor, HintedError, hintNotFound } from "./errors.ts";

Deno.test("errors: every gRPC code has its own exit status", () => {
  const codes = Object.values(Code).filter((v) => typeof v === "number") as Code[];
  const statuses = codes.map(exitStatusFor);
  assert.equal(new Set(statuses).size, codes.length);
  assert.equal(EXIT_STATUS[Code.OK], 0);
  assert.equal(exitStatusFor(Code.NotFound), 3);
  assert.equal(exitStatusFor(Code.Unavailable), 8);
  for (const s of statuses) assert.ok(s >= 0 && s < 126);
});

Deno.test("errors: messages with hints; stack only with --debug", () => {
  const e = hintNotFound(notFound(`container "x"`), "list containers with: berth containers ls");
  assert.ok(e instanceof HintedError);
  const text = describeError(e, false);
  assert.equal(text, `berth: container "x": not found\nlist containers with: berth containers ls`);
  assert.doesNotMatch(text, /at /);
  assert.match(describeError(e, true), /code NotFound, exit status 3\)\n.*Error|HintedError|at /s);
  // Other codes are not touched by hintNotFound.
  const other = new BerthError(Code.Internal, "boom");
  assert.equal(hintNotFound(other, "x"), other);
  assert.equal(describeError(new Error("plain"), false), "berth: plain");
});
