import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import {
  type CommandSpec,
  globalOptions,
  type GroupSpec,
  labelArgs,
  parseDuration,
  parseFlags,
  runGroup,
  splitAfterPositionals,
  splitGlobal,
} from "./cli.ts";

Deno.test("cli: global flags stop at the command word, values included", () => {
  assert.deepEqual(splitGlobal(["-n", "x", "--debug", "tasks", "kill", "-a"]), [[
    "-n",
    "x",
    "--debug",
  ], ["tasks", "kill", "-a"]]);
  assert.deepEqual(splitGlobal(["--address=/a", "version"]), [["--address=/a"], ["version"]]);
  assert.deepEqual(splitGlobal([]), [[], []]);
});

Deno.test("cli: environment and defaults for address and namespace", () => {
  const env = (m: Record<string, string>) => (k: string) => m[k];
  assert.equal(globalOptions({}, env({})).address, "/run/berth/berth.sock");
  assert.equal(globalOptions({}, env({})).namespace, "default");
  assert.equal(globalOptions({}, env({ CONTAINERD_NAMESPACE: "c" })).namespace, "c");
  assert.equal(
    globalOptions({}, env({ CONTAINERD_NAMESPACE: "c", BERTH_NAMESPACE: "b" })).namespace,
    "b",
  );
  assert.equal(globalOptions({ namespace: "f" }, env({ BERTH_NAMESPACE: "b" })).namespace, "f");
  assert.equal(globalOptions({}, env({ BERTH_ADDRESS: "unix:///x.sock" })).address, "/x.sock");
  assert.equal(globalOptions({ timeout: "1m30s" }, env({})).timeoutMs, 90_000);
});

Deno.test("cli: durations like Go's", () => {
  assert.equal(parseDuration("500ms"), 500);
  assert.equal(parseDuration("2h"), 7_200_000);
  assert.equal(parseDuration("3"), 3000);
  assert.throws(() => parseDuration("soon"), (e) => isCode(e, Code.InvalidArgument));
});

Deno.test("cli: flag tables parse short, repeated and unknown flags", () => {
  const table = {
    quiet: { type: "boolean" as const, short: "q", help: "" },
    env: { type: "string" as const, multiple: true, help: "" },
    snapshotter: { type: "string" as const, default: "overlayfs", help: "" },
  };
  const r = parseFlags(["-q", "--env", "A=1", "x", "--env=B=2"], table, "berth t");
  assert.deepEqual(r.args, ["x"]);
  assert.equal(r.flags.quiet, true);
  assert.deepEqual(r.flags.env, ["A=1", "B=2"]);
  assert.equal(r.flags.snapshotter, "overlayfs");
  assert.throws(
    () => parseFlags(["--nope"], table, "berth t"),
    (e) => isCode(e, Code.InvalidArgument) && /berth t: .*--nope/.test((e as Error).message),
  );
});

Deno.test("cli: labels; an empty value clears", () => {
  assert.deepEqual(labelArgs(["a=b", "c=", "d", "e=f=g"]), { a: "b", c: "", d: "", "e": "f=g" });
  assert.throws(() => labelArgs(["=x"]), (e) => isCode(e, Code.InvalidArgument));
});

Deno.test("cli: groups pick subcommands by alias, take group flags, and refuse unknown ones", async () => {
  const seen: unknown[] = [];
  const ls: CommandSpec = {
    name: "list",
    aliases: ["ls"],
    usage: "",
    flags: { snapshotter: { type: "string", default: "overlayfs", help: "" } },
    run: (inv) => {
      seen.push(inv.flags.snapshotter, inv.args);
      return Promise.resolve(0);
    },
  };
  const g: GroupSpec = {
    name: "snapshots",
    usage: "",
    flags: { snapshotter: { type: "string", help: "" } },
    commands: [ls],
  };
  const global = globalOptions({}, () => undefined);
  assert.equal(
    await runGroup(g, ["--snapshotter", "native", "ls", "f"], global, "berth snapshots"),
    0,
  );
  assert.equal(await runGroup(g, ["ls", "--snapshotter", "btrfs"], global, "berth snapshots"), 0);
  assert.deepEqual(seen, ["native", ["f"], "btrfs", []]);
  await assert.rejects(
    runGroup(g, ["bogus"], global, "berth snapshots"),
    (e) => isCode(e, Code.InvalidArgument),
  );
});

Deno.test("cli: run-style commands take everything after IMAGE ID verbatim", () => {
  const table = {
    rm: { type: "boolean" as const, help: "" },
    config: { type: "string" as const, short: "c", help: "" },
  };
  {
    assert.deepEqual(splitAfterPositionals(["--rm", "img", "id", "sh", "-c", "exit 3"], table, 2), [
      ["--rm", "img", "id"],
      ["sh", "-c", "exit 3"],
    ]);
    assert.deepEqual(splitAfterPositionals(["-c", "f.json", "img", "id"], table, 2), [[
      "-c",
      "f.json",
      "img",
      "id",
    ], []]);
    assert.deepEqual(splitAfterPositionals(["img", "--", "x"], table, 2), [["img"], ["x"]]);
  }
});
