import assert from "node:assert/strict";
import { defaultConfig, parseConfig } from "../config/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { configMain } from "./config.ts";
import { configPathOf, DAEMON_USAGE, parseDaemonArgs } from "./daemon_args.ts";
import { memoryTidier } from "./daemon.ts";

Deno.test("daemon args: the command line of berth daemon", () => {
  const a = parseDaemonArgs([
    "--config",
    "/etc/x.toml",
    "--root",
    "/r",
    "--state",
    "/s",
    "-a",
    "/s/b.sock",
    "-l",
    "debug",
  ]);
  assert.deepEqual(a, {
    configPath: "/etc/x.toml",
    overrides: { root: "/r", state: "/s", address: "/s/b.sock", logLevel: "debug" },
    help: false,
  });
  assert.equal(parseDaemonArgs(["-h"]).help, true);
  assert.throws(() => parseDaemonArgs(["--bogus"]), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(() => parseDaemonArgs(["extra"]), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(() => parseDaemonArgs(["--root", "relative"]), /--root must be an absolute path/);
  assert.match(DAEMON_USAGE, /--address SOCK/);
});

Deno.test("daemon args: --config wins; without it the default file only when it exists", async () => {
  assert.equal(await configPathOf(parseDaemonArgs(["-c", "/nowhere/x.toml"])), "/nowhere/x.toml");
  const dflt = await configPathOf(parseDaemonArgs([]));
  assert.ok(dflt === undefined || dflt === "/etc/berth/config.toml");
});

Deno.test("config: `berth config default` and `dump` print TOML that loads back", async () => {
  const out: string[] = [];
  const err: string[] = [];
  assert.equal(await configMain(["default"], (s) => out.push(s), (s) => err.push(s)), 0);
  assert.deepEqual(parseConfig(out[0]).config, defaultConfig());
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/c.toml`, `version = 2\nroot = "/srv/b"\nshiny = true\n`);
    out.length = 0;
    assert.equal(
      await configMain(
        ["dump", "-c", `${dir}/c.toml`, "--address", "/x/b.sock"],
        (s) => out.push(s),
        (s) => err.push(s),
      ),
      0,
    );
    const dumped = parseConfig(out[0]).config;
    assert.equal(dumped.root, "/srv/b");
    assert.equal(dumped.ttrpc.address, "/x/b.sock.ttrpc", "derived values are filled in");
    assert.match(err.join("\n"), /warning: .*shiny: unknown key/);
    err.length = 0;
    assert.equal(await configMain(["dump", "--bogus"], (s) => out.push(s), (s) => err.push(s)), 1);
    assert.match(err.join("\n"), /config dump: /);
    assert.equal(
      await configMain(["dump", "--root", "rel"], (s) => out.push(s), (s) => err.push(s)),
      1,
      "dump checks its flags as the daemon does",
    );
    assert.equal(await configMain(["frobnicate"], (s) => out.push(s), (s) => err.push(s)), 1);
    assert.match(err.join("\n"), /unknown config command "frobnicate"/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("memoryTidier: trims every time, collects garbage only after ArrayBuffer memory grew", () => {
  const g = globalThis as { gc?: () => void };
  const saved = g.gc;
  let collections = 0, trims = 0;
  g.gc = () => collections++;
  try {
    const tidy = memoryTidier(() => {
      trims++;
      return true;
    });
    tidy();
    assert.equal(collections, 0, "nothing grew yet");
    const held = new Uint8Array(8 << 20).fill(1); // external memory, alive
    tidy();
    assert.equal(collections, 1, "8 MiB more external memory: one collection");
    tidy();
    assert.equal(collections, 1, "no growth since: no collection");
    assert.equal(trims, 3);
    assert.equal(held[0], 1);
  } finally {
    if (saved === undefined) delete g.gc;
    else g.gc = saved;
  }
});
