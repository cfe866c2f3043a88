import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { isOwnChild, run, runChecked, selfCommand, spawn } from "./mod.ts";

Deno.test("spawn: run collects output and exit code; input reaches stdin", async () => {
  const r = await run("sh", ["-c", "cat; echo err >&2; exit 4"], {
    input: new TextEncoder().encode("in"),
  });
  assert.equal(r.code, 4);
  assert.equal(new TextDecoder().decode(r.stdout), "in");
  assert.equal(new TextDecoder().decode(r.stderr), "err\n");
});

Deno.test("spawn: a child is 'own' until its status is collected", async () => {
  const child = spawn("sleep", ["0.05"], { stdout: "null", stderr: "null" });
  assert.ok(isOwnChild(child.pid));
  await child.status;
  await Promise.resolve();
  assert.ok(!isOwnChild(child.pid));
});

Deno.test("spawn: runChecked turns failure into an error with stderr; a missing binary is NotFound", async () => {
  await assert.rejects(runChecked("sh", ["-c", "echo broken >&2; exit 1"]), /broken/);
  assert.throws(() => spawn("/no/such/berth-binary", []), (e) => isCode(e, Code.NotFound));
});

Deno.test("spawn: selfCommand from a source checkout runs deno with the repo config", () => {
  const c = selfCommand(["--version"]);
  assert.equal(c.cmd, Deno.execPath());
  assert.equal(c.args[0], "run");
  assert.equal(c.args.at(-1), "--version");
});
