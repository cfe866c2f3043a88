import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import {
  configToToml,
  defaultConfig,
  defaultSnapshotter,
  effectiveConfig,
  loadConfig,
  parseConfig,
  parseDuration,
  resolveRuntime,
  ttrpcAddress,
} from "./mod.ts";

Deno.test("config: defaults are containerd's layout under berth's paths", () => {
  const c = defaultConfig();
  assert.equal(c.version, 2);
  assert.equal(c.root, "/var/lib/berth");
  assert.equal(c.state, "/run/berth");
  assert.equal(c.grpc.address, "/run/berth/berth.sock");
  assert.equal(ttrpcAddress(c), "/run/berth/berth.sock.ttrpc");
  assert.equal(defaultSnapshotter(c), "overlayfs");
  assert.equal(resolveRuntime(c).runtimeType, "io.containerd.berth.v2");
  assert.equal(resolveRuntime(c).binary, "containerd-shim-berth-v2");
});

Deno.test("config: default TOML parses back to the defaults without warnings", () => {
  const text = configToToml(defaultConfig());
  assert.match(text, /^version = 2$/m);
  assert.match(text, /\[plugins\."io\.containerd\.grpc\.v1\.cri"\.containerd\.runtimes\.berth\]/);
  const { config, warnings } = parseConfig(text);
  assert.deepEqual(warnings, []);
  assert.deepEqual(config, defaultConfig());
});

Deno.test("config: a file merges over the defaults; maps gain entries", () => {
  const { config, warnings } = parseConfig(`
version = 2
root = "/srv/berth"
[grpc]
address = "/tmp/b.sock"
[debug]
level = "debug"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun]
runtime_type = "io.containerd.runc.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]
BinaryName = "/usr/bin/crun"
[plugins."io.containerd.gc.v1.scheduler"]
pause_threshold = 0.5
`);
  assert.deepEqual(warnings, []);
  assert.equal(config.root, "/srv/berth");
  assert.equal(config.state, "/run/berth");
  assert.equal(ttrpcAddress(config), "/tmp/b.sock.ttrpc");
  assert.equal(effectiveConfig(config).ttrpc.address, "/tmp/b.sock.ttrpc");
  assert.equal(config.debug.level, "debug");
  const gc = config.plugins["io.containerd.gc.v1.scheduler"];
  assert.equal(gc.pause_threshold, 0.5);
  assert.equal(gc.mutation_threshold, 100, "keys the file leaves out keep their defaults");
  const crun = resolveRuntime(config, "crun");
  assert.deepEqual(crun, {
    name: "crun",
    runtimeType: "io.containerd.runc.v2",
    binary: "containerd-shim-runc-v2",
    options: { BinaryName: "/usr/bin/crun" },
  });
  assert.equal(
    resolveRuntime(config, "berth").runtimeType,
    "io.containerd.berth.v2",
    "defaults kept",
  );
});

Deno.test("config: runtimes by table key, by runtime type, by containerd's naming rule", () => {
  const c = defaultConfig();
  assert.equal(resolveRuntime(c, "runc").binary, "containerd-shim-runc-v2");
  assert.equal(resolveRuntime(c, "io.containerd.runc.v2").name, "io.containerd.runc.v2");
  assert.equal(resolveRuntime(c, "io.containerd.kata.v2").binary, "containerd-shim-kata-v2");
  assert.throws(
    () => resolveRuntime(c, "nope"),
    (e) => isCode(e, Code.NotFound) && /"nope"/.test(String(e)),
  );
  const { config } = parseConfig(`
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.mine]
runtime_type = "io.containerd.berth.v2"
runtime_path = "/opt/berth/shim"
`);
  assert.equal(resolveRuntime(config, "mine").binary, "/opt/berth/shim");
});

Deno.test("config: unknown and unsupported keys warn, naming the key", () => {
  const { config, warnings } = parseConfig(
    `
version = 2
colour = "blue"
[cgroup]
path = "/berth"
[plugins."io.containerd.grpc.v1.cri"]
enable_selinux = true
[plugins."io.example.v1.thing"]
x = 1
`,
    "c.toml",
  );
  assert.equal(warnings.length, 3, warnings.join("\n"));
  assert.match(warnings[0], /^c\.toml: colour: unknown key; ignored$/);
  assert.match(warnings[1], /cgroup: a cgroup for the daemon is not supported by berth/);
  assert.match(warnings[2], /plugins\."io\.containerd\.grpc\.v1\.cri"\.enable_selinux/);
  assert.deepEqual(
    config.plugins["io.example.v1.thing"],
    { x: 1 },
    "sections of other plugins are kept",
  );
  assert.equal(parseConfig("").warnings.length, 1, "a missing version is noted");
});

Deno.test("config: wrong types, bad values and bad TOML are InvalidArgument naming the key", () => {
  const cases: Array<[string, RegExp]> = [
    [`[grpc]\nuid = "root"`, /c\.toml: grpc\.uid: expected an integer, got the string "root"/],
    [`root = 5`, /root: expected a string, got number 5/],
    [`disabled_plugins = ["a", 2]`, /disabled_plugins\[1\]: expected a string/],
    [`grpc = "x"`, /grpc: expected a table/],
    [
      `[plugins."io.containerd.gc.v1.scheduler"]\npause_threshold = "lots"`,
      /"io\.containerd\.gc\.v1\.scheduler"\.pause_threshold: expected a number/,
    ],
    [`[debug]\nlevel = "loud"`, /debug\.level: unknown level "loud"/],
    [`version = 1`, /version: berth reads version 2 configs/],
    [`root = "relative"`, /root: must be an absolute path/],
    [`root = `, /c\.toml: .*invalid/i],
  ];
  for (const [text, re] of cases) {
    assert.throws(
      () => parseConfig(text, "c.toml"),
      (e) => isCode(e, Code.InvalidArgument) && re.test(String(e)),
      text,
    );
  }
});

Deno.test("config: loadConfig reads a file and flags override it", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/config.toml`;
    await Deno.writeTextFile(path, `version = 2\nroot = "/from/file"\nstate = "/state/file"\n`);
    const { config } = await loadConfig(path, {
      state: "/from/flag",
      address: "/x/y.sock",
      logLevel: "debug",
    });
    assert.equal(config.root, "/from/file");
    assert.equal(config.state, "/from/flag");
    assert.equal(ttrpcAddress(config), "/x/y.sock.ttrpc");
    assert.equal(config.debug.level, "debug");
    await assert.rejects(loadConfig(`${dir}/missing.toml`), (e) => isCode(e, Code.NotFound));
    await assert.rejects(
      loadConfig(undefined, { logLevel: "x" }),
      (e) => isCode(e, Code.InvalidArgument),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("config: Go durations", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("0s"), 0);
  assert.equal(parseDuration("100ms"), 100);
  assert.equal(parseDuration("1m30s"), 90_000);
  assert.equal(parseDuration("1.5s"), 1500);
  for (const bad of ["", "5", "5x", "s", "1s junk"]) {
    assert.throws(
      () => parseDuration(bad, "gc.schedule_delay"),
      /gc\.schedule_delay: .* is not a duration/,
      bad,
    );
  }
});

Deno.test("config: [metrics] and [debug] endpoints are off by default and checked when set", () => {
  const def = parseConfig("version = 2").config;
  assert.equal(def.metrics.address, "");
  assert.equal(def.debug.address, "");
  const { config, warnings } = parseConfig(
    `version = 2
[metrics]
address = "127.0.0.1:1338"
grpc_histogram = true
[debug]
address = "/run/berth/debug.sock"
uid = 5
`,
  );
  assert.deepEqual(warnings, []);
  assert.deepEqual(config.metrics, { address: "127.0.0.1:1338", grpc_histogram: true });
  assert.equal(config.debug.address, "/run/berth/debug.sock");
  assert.equal(config.debug.uid, 5);
  assert.throws(
    () => parseConfig(`version = 2\n[metrics]\naddress = "nowhere"`),
    /metrics\.address: "nowhere" is not a TCP address/,
  );
  assert.throws(
    () => parseConfig(`version = 2\n[debug]\naddress = "debug.sock"`),
    /debug\.address: must be an absolute socket path/,
  );
});
