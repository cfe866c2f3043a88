import assert from "node:assert/strict";
import { applyOverrides, defaultConfig, parseConfig } from "../config/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { Version } from "../gen/containerd/services/version/v1/version_pb.ts";
import { setLogSink } from "../log/mod.ts";
import { type Registration, RequiredPluginError } from "../plugin/mod.ts";
import { versionPlugin } from "../services/version/mod.ts";
import { connect, serviceClient } from "../ttrpc/mod.ts";
import { VERSION } from "../version.ts";
import { DAEMON_USAGE, parseDaemonArgs, startDaemon } from "./mod.ts";

async function withDirs(fn: (tmp: string, logs: string[]) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "berth-daemon-unit-" });
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  try {
    await fn(tmp, logs);
  } finally {
    setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l)));
    await Deno.remove(tmp, { recursive: true });
  }
}

function configIn(tmp: string, extra = "") {
  const { config } = parseConfig(`version = 2\n${extra}`);
  return applyOverrides(config, {
    root: `${tmp}/root`,
    state: `${tmp}/state`,
    address: `${tmp}/state/b.sock`,
  });
}

Deno.test("daemon: serves the plugins' services; one daemon per root; stop removes the socket and frees the root", () =>
  withDirs(async (tmp, logs) => {
    const plugins: Registration[] = [versionPlugin];
    const d = await startDaemon(configIn(tmp), { plugins });
    assert.equal(d.ttrpcAddress, `${tmp}/state/b.sock.ttrpc`);
    const client = await connect(d.ttrpcAddress);
    assert.equal((await serviceClient(client, Version).version({})).version, VERSION);
    client.close();
    await assert.rejects(startDaemon(configIn(tmp), { plugins }), (e) => {
      assert.ok(isCode(e, Code.FailedPrecondition));
      assert.match(
        (e as Error).message,
        new RegExp(`root ${tmp}/root is in use by another berth daemon \\(pid ${Deno.pid}\\)`),
      );
      return true;
    });
    await d.stop();
    await d.stop(); // idempotent
    await assert.rejects(Deno.lstat(d.ttrpcAddress), Deno.errors.NotFound);
    const again = await startDaemon(configIn(tmp), { plugins });
    await again.stop();
    assert.ok(logs.some((l) => /level=info msg="berth stopped"/.test(l)));
  }));

Deno.test("daemon: a required plugin that fails stops start-up and leaves no socket and no lock", () =>
  withDirs(async (tmp, logs) => {
    const broken: Registration = {
      type: "t.x.v1",
      id: "broken",
      required: true,
      init: () => {
        throw new Error("no way");
      },
    };
    let closed = 0;
    const first: Registration = {
      type: "t.a.v1",
      id: "a",
      init: () => 1,
      close: () => void closed++,
    };
    await assert.rejects(startDaemon(configIn(tmp), { plugins: [first, broken] }), (e) => {
      assert.ok(e instanceof RequiredPluginError);
      assert.match(e.message, /load required plugin t\.x\.v1\.broken: no way/);
      return true;
    });
    assert.equal(closed, 1, "plugins loaded before the failure are closed");
    await assert.rejects(Deno.lstat(`${tmp}/state/b.sock.ttrpc`), Deno.errors.NotFound);
    // Configured as required but not there at all.
    await assert.rejects(
      startDaemon(configIn(tmp, `required_plugins = ["io.containerd.grpc.v1.nope"]`), {
        plugins: [first],
      }),
      /required plugin io\.containerd\.grpc\.v1\.nope is not registered/,
    );
    // The root is free again.
    const d = await startDaemon(configIn(tmp, `[plugins."io.example.v1.mystery"]\nx = 1\n`), {
      plugins: [first],
    });
    await d.stop();
    assert.ok(
      logs.some((l) =>
        /config has a section for a plugin berth does not have.*io\.example\.v1\.mystery/.test(l)
      ),
    );
  }));

Deno.test("daemon: a live socket at the address is not taken over", () =>
  withDirs(async (tmp) => {
    await Deno.mkdir(`${tmp}/state`, { recursive: true });
    const other = Deno.listen({ transport: "unix", path: `${tmp}/state/b.sock.ttrpc` });
    try {
      await assert.rejects(
        startDaemon(configIn(tmp), { plugins: [versionPlugin] }),
        /in use by a running server/,
      );
      const d = await startDaemon(
        applyOverrides(configIn(tmp), { root: `${tmp}/root`, address: `${tmp}/elsewhere/b.sock` }),
        { plugins: [versionPlugin] },
      );
      assert.equal(
        (await Deno.stat(`${tmp}/elsewhere`)).mode! & 0o777,
        0o700,
        "a missing socket directory is made private",
      );
      await d.stop();
    } finally {
      other.close();
    }
  }));

Deno.test("daemon: command line", () => {
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
  assert.equal(defaultConfig().grpc.address, "/run/berth/berth.sock");
});
