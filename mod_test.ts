import assert from "node:assert/strict";
import { chooseMode } from "./mod.ts";

Deno.test("chooseMode: daemon and shim by first word, the rest is the client", () => {
  assert.equal(chooseMode(["daemon", "--root", "/x"], "berth"), "daemon");
  assert.equal(chooseMode(["shim", "-namespace", "n", "start"], "berth"), "shim");
  assert.equal(chooseMode(["run", "--rm", "img", "c1"], "berth"), "client");
  assert.equal(chooseMode([], "berth"), "client");
  assert.equal(chooseMode(["-n", "ns", "tasks", "ls"], "berth"), "client");
});

Deno.test("chooseMode: containerd's call of a v2 shim selects the shim, by name or by flags", () => {
  const argv = [
    "-namespace",
    "default",
    "-address",
    "/run/c.sock",
    "-publish-binary",
    "/bin/c",
    "-id",
    "c1",
    "start",
  ];
  assert.equal(chooseMode(argv, "containerd-shim-berth-v2"), "shim");
  assert.equal(chooseMode(argv, "berth"), "shim");
  assert.equal(chooseMode(["-id", "c1", "delete"], "berth"), "shim");
});
