import assert from "node:assert/strict";
import { BerthError, Code, codeForErrno, codeName, isCode, notFound, toBerthError } from "./mod.ts";

Deno.test("errdefs: helpers carry their code and a readable message", () => {
  const e = notFound(`container "c1"`);
  assert.ok(e instanceof BerthError);
  assert.equal(e.code, Code.NotFound);
  assert.equal(e.message, `container "c1": not found`);
  assert.ok(isCode(e, Code.NotFound));
  assert.ok(!isCode(new Error("x"), Code.NotFound));
  assert.equal(codeName(Code.FailedPrecondition), "FailedPrecondition");
});

Deno.test("errdefs: toBerthError maps Deno and errno errors, passes BerthError through", async () => {
  const mine = new BerthError(Code.Aborted, "a");
  assert.equal(toBerthError(mine), mine);
  const missing = await Deno.readFile("/nonexistent/berth").catch((e) => e);
  assert.equal(toBerthError(missing).code, Code.NotFound);
  const sys = Object.assign(new Error("setns: EPERM"), { errno: 1 });
  assert.equal(toBerthError(sys).code, Code.PermissionDenied);
  assert.equal(toBerthError("weird").code, Code.Unknown);
  // Deno's own form of a full disk: a plain Error whose code names the errno.
  const full = Object.assign(new Error("No space left on device (os error 28)"), {
    code: "ENOSPC",
  });
  assert.equal(toBerthError(full).code, Code.ResourceExhausted);
  assert.equal(codeForErrno(3), Code.NotFound);
  assert.equal(codeForErrno(9999), Code.Unknown);
});
