import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import {
  applyOptions,
  capsFromMask,
  DEFAULT_PATH,
  defaultSpec,
  mergeEnv,
  parseHookFlag,
  parseMountFlag,
  parseUser,
  withImageConfig,
} from "./mod.ts";

Deno.test("oci: default spec has containerd's shape", () => {
  const s = defaultSpec("default", "c1");
  assert.equal(s.linux.cgroupsPath, "/default/c1");
  assert.deepEqual(s.linux.namespaces.map((n) => n.type), [
    "pid",
    "ipc",
    "uts",
    "mount",
    "network",
  ]);
  assert.equal(s.mounts[0].destination, "/proc");
  assert.equal(s.process.capabilities.bounding.length, 14);
  assert.equal(s.root.path, "rootfs");
  assert.deepEqual(s.linux.resources.devices[0], { allow: false, access: "rwm" });
});

Deno.test("oci: image config sets env, cwd, user and args; explicit args replace entrypoint+cmd", () => {
  const s = defaultSpec("ns", "c");
  withImageConfig(s, {
    Env: ["FOO=1"],
    WorkingDir: "/w",
    User: "1000:50",
    Entrypoint: ["/bin/sh", "-c"],
    Cmd: ["echo hi"],
  });
  assert.deepEqual(s.process.env, [DEFAULT_PATH, "FOO=1"]);
  assert.equal(s.process.cwd, "/w");
  assert.deepEqual(s.process.user, { uid: 1000, gid: 50 });
  assert.deepEqual(s.process.args, ["/bin/sh", "-c", "echo hi"]);
  withImageConfig(s, { Env: ["PATH=/x"], Cmd: ["sh"] }, ["true"]);
  assert.deepEqual(s.process.env, ["PATH=/x"]);
  assert.deepEqual(s.process.args, ["true"]);
  assert.equal(s.process.cwd, "/");
});

Deno.test("oci: env merge replaces keys in place", () => {
  assert.deepEqual(mergeEnv(["A=1", "B=2"], ["B=3", "C=4"]), ["A=1", "B=3", "C=4"]);
});

Deno.test("oci: user parsing", () => {
  assert.deepEqual(parseUser("5"), { uid: 5, gid: 5 });
  assert.deepEqual(parseUser("root"), { uid: 0, gid: 0 });
  assert.throws(() => parseUser("nobody"), (e) => isCode(e, Code.InvalidArgument));
});

Deno.test("oci: mount flag parsing like ctr's", () => {
  assert.deepEqual(parseMountFlag("type=bind,src=/a,dst=/b,options=rbind:ro"), {
    type: "bind",
    source: "/a",
    destination: "/b",
    options: ["rbind", "ro"],
  });
  assert.throws(() => parseMountFlag("type=bind,src=/a"), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(() => parseMountFlag("bogus"), (e) => isCode(e, Code.InvalidArgument));
});

Deno.test("oci: run options (net-host, privileged, caps, limits, namespaces, read-only)", () => {
  const s = defaultSpec("ns", "c");
  applyOptions(s, {
    tty: true,
    env: ["X=1"],
    cwd: "/tmp",
    netHost: true,
    hostFiles: ["/etc/resolv.conf"],
    readOnly: true,
    memoryLimit: 1 << 20,
    cpus: 0.5,
    cpuShares: 512,
    capAdd: ["sys_admin"],
    capDrop: ["CAP_KILL"],
    withNs: ["ipc:/proc/1/ns/ipc"],
    annotations: { a: "b" },
    mounts: [{ type: "bind", source: "/x", destination: "/run", options: ["rbind"] }],
  });
  assert.equal(s.process.terminal, true);
  assert.ok(s.process.env.includes("X=1"));
  assert.ok(!s.linux.namespaces.some((n) => n.type === "network"));
  assert.deepEqual(s.linux.namespaces.find((n) => n.type === "ipc"), {
    type: "ipc",
    path: "/proc/1/ns/ipc",
  });
  assert.equal(s.root.readonly, true);
  assert.deepEqual(s.linux.resources.memory, { limit: 1 << 20 });
  assert.deepEqual(s.linux.resources.cpu, { quota: 50000, period: 100000, shares: 512 });
  assert.ok(s.process.capabilities.bounding.includes("CAP_SYS_ADMIN"));
  assert.ok(!s.process.capabilities.bounding.includes("CAP_KILL"));
  assert.equal(s.mounts.filter((m) => m.destination === "/run").length, 1);
  assert.equal(s.mounts.find((m) => m.destination === "/run")?.type, "bind");
  assert.ok(s.mounts.some((m) => m.destination === "/etc/resolv.conf"));
  assert.deepEqual(s.annotations, { a: "b" });
  const p = defaultSpec("ns", "c");
  applyOptions(p, { privileged: true });
  assert.equal(p.linux.maskedPaths, undefined);
  assert.ok(p.process.capabilities.bounding.length > 30);
  // A host without CAP_SYS_RESOURCE (bit 24) cannot grant it, even privileged.
  const host = capsFromMask("000001fffeffffff");
  assert.equal(host.length, 40);
  assert.ok(!host.includes("CAP_SYS_RESOURCE"));
  const limited = defaultSpec("ns", "c");
  applyOptions(limited, { privileged: true, hostCaps: host });
  assert.deepEqual(limited.process.capabilities.bounding, host);
  assert.throws(
    () => applyOptions(p, { withNs: ["bogus:/x"] }),
    (e) => isCode(e, Code.InvalidArgument),
  );
});

Deno.test("oci: --hook parses STAGE=PATH[:ARG...] and the JSON form, appending per stage", () => {
  const a = parseHookFlag("prestart=/bin/sh:-c:echo {{id}}");
  assert.deepEqual(a, {
    stage: "prestart",
    hook: { path: "/bin/sh", args: ["/bin/sh", "-c", "echo {{id}}"] },
  });
  const b = parseHookFlag('poststop=["/bin/sh","-c","echo a:b"]');
  assert.deepEqual(b.hook.args, ["/bin/sh", "-c", "echo a:b"]);
  const spec = defaultSpec("default", "c1");
  applyOptions(spec, { hooks: [a, b, parseHookFlag("prestart=/bin/true")] });
  assert.deepEqual(spec.hooks?.prestart?.map((h) => h.path), ["/bin/sh", "/bin/true"]);
  assert.equal(spec.hooks?.poststop?.length, 1);
  for (const bad of ["prestrt=/bin/true", "prestart=true", "poststart=[1]", "poststart=[", "x"]) {
    assert.throws(() => parseHookFlag(bad), (e) => isCode(e, Code.InvalidArgument), bad);
  }
});
