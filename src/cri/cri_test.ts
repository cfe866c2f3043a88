import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, isCode } from "../errdefs/mod.ts";
import {
  ContainerConfigSchema,
  NamespaceMode,
  PodSandboxConfigSchema,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { criConfig, DEFAULT_SANDBOX_IMAGE } from "./config.ts";
import { formatRecord, LineSplitter, MAX_RECORD, rfc3339Nano } from "./logs.ts";
import { containerSpec, processArgs, sandboxSpec } from "./spec.ts";
import { readRootfsFile, resolveUser } from "./user.ts";
import { ociSeccomp, seccompChoice } from "./seccomp.ts";
import { LinuxContainerSecurityContextSchema } from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { decodeRunStatus, encodeRunStatus, Index, newRunStatus } from "./store.ts";
import { ContainerIO } from "./io.ts";

Deno.test("cri config: containerd's defaults, and the section's keys", () => {
  const d = criConfig({});
  assert.equal(d.sandboxImage, DEFAULT_SANDBOX_IMAGE);
  assert.equal(d.streamServerAddress, "127.0.0.1");
  assert.equal(d.streamServerPort, "0");
  assert.equal(d.cniConfDir, "/etc/cni/net.d");
  assert.equal(d.cniBinDir, "/opt/cni/bin");
  assert.equal(d.restrictOomScoreAdj, false);
  const c = criConfig({
    sandbox_image: "pause:1",
    stream_server_port: "10010",
    restrict_oom_score_adj: true,
    netns_mounts_under_state_dir: true,
    cni: { bin_dir: "/usr/lib/cni", conf_dir: "/tmp/net.d" },
    containerd: { snapshotter: "native" },
  });
  assert.deepEqual(
    [c.sandboxImage, c.streamServerPort, c.cniBinDir, c.cniConfDir, c.snapshotter],
    ["pause:1", "10010", "/usr/lib/cni", "/tmp/net.d", "native"],
  );
  assert.ok(c.restrictOomScoreAdj && c.netnsMountsUnderStateDir);
  assert.throws(
    () => criConfig({ stream_server_port: "http" }),
    (e) => isCode(e, Code.InvalidArgument) && /stream_server_port/.test(String(e)),
  );
});

Deno.test("cri logs: RFC3339Nano as Go writes it, and records split at newlines and the cap", () => {
  const t = new Date("2026-12-02T01:02:03.450Z");
  assert.equal(rfc3339Nano(t), "2026-12-02T01:02:03.45Z");
  assert.equal(rfc3339Nano(new Date("2026-12-02T01:02:03.000Z")), "2026-12-02T01:02:03Z");
  assert.equal(rfc3339Nano(t, 123_456_789), "2026-12-02T01:02:03.123456789Z");
  const rec = new TextDecoder().decode(
    formatRecord(t, "stderr", false, new TextEncoder().encode("hi")),
  );
  assert.equal(rec, "2026-12-02T01:02:03.45Z stderr F hi\n");

  const s = new LineSplitter();
  const enc = (x: string) => new TextEncoder().encode(x);
  const text = (rs: { partial: boolean; text: Uint8Array }[]) =>
    rs.map((r) => `${r.partial ? "P" : "F"}:${new TextDecoder().decode(r.text)}`);
  assert.deepEqual(text(s.push(enc("a\nb"))), ["F:a"]);
  assert.deepEqual(text(s.push(enc("c\n\nd"))), ["F:bc", "F:"]);
  assert.deepEqual(text(s.flush()), ["F:d"]);
  assert.deepEqual(text(s.flush()), []);
  const long = s.push(enc("x".repeat(MAX_RECORD + 10) + "\n"));
  assert.deepEqual(long.map((r) => [r.partial, r.text.length]), [[true, MAX_RECORD], [false, 10]]);
});

Deno.test("cri io: output written just before the stop reaches the log and an attached tap", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const io = await ContainerIO.open({
      dir: `${dir}/io`,
      logPath: `${dir}/c.log`,
      tty: false,
      stdin: false,
    });
    let tapped = "";
    io.attach((_, chunk) => tapped += new TextDecoder().decode(chunk));
    // As a shim does: write, close, and the exit is reported at once.
    const w = await Deno.open(io.paths.stdout, { write: true });
    await w.write(new TextEncoder().encode("last words\n"));
    w.close();
    await io.stop();
    assert.equal(tapped, "last words\n");
    assert.match(await Deno.readTextFile(`${dir}/c.log`), / stdout F last words\n$/);
    await io.closed;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cri spec: command and args as the kubelet means them", () => {
  const image = { Entrypoint: ["/ep"], Cmd: ["default"] };
  const cfg = (command: string[], args: string[]) =>
    create(ContainerConfigSchema, { command, args });
  assert.deepEqual(processArgs(cfg([], []), image), ["/ep", "default"]);
  assert.deepEqual(processArgs(cfg([], ["x"]), image), ["/ep", "x"]);
  assert.deepEqual(processArgs(cfg(["sh"], ["-c", "true"]), image), ["sh", "-c", "true"]);
});

Deno.test("cri spec: a sandbox's namespaces, and its containers joining them", () => {
  const pod = create(PodSandboxConfigSchema, {
    metadata: { name: "p", namespace: "ns", uid: "u" },
    hostname: "h",
    linux: { cgroupParent: "/kubepods/pod1", sysctls: { "net.core.somaxconn": "100" } },
  });
  const s = sandboxSpec({
    id: "sb",
    config: pod,
    image: { Cmd: ["/pause"] },
    netnsPath: "/run/netns/x",
    shmPath: "/run/shm",
    maxOomScoreAdj: 0,
  }) as ReturnType<typeof sandboxSpec> & {
    process: { oomScoreAdj: number };
    linux: { sysctl: Record<string, string> };
  };
  assert.deepEqual(s.process.args, ["/pause"]);
  assert.equal(s.hostname, "h");
  assert.equal(s.linux.cgroupsPath, "/kubepods/pod1/sb");
  assert.deepEqual(s.linux.namespaces.find((n) => n.type === "network"), {
    type: "network",
    path: "/run/netns/x",
  });
  assert.equal(s.linux.sysctl["net.core.somaxconn"], "100");
  assert.equal(s.process.oomScoreAdj, 0, "clamped to what the daemon may give");
  assert.equal(s.annotations?.["io.kubernetes.cri.container-type"], "sandbox");

  const hostPod = create(PodSandboxConfigSchema, {
    metadata: { name: "p", namespace: "ns", uid: "u" },
    linux: {
      securityContext: {
        namespaceOptions: { network: NamespaceMode.NODE, pid: NamespaceMode.NODE },
      },
    },
  });
  const h = sandboxSpec({
    id: "sb",
    config: hostPod,
    image: { Cmd: ["/pause"] },
    netnsPath: "",
    shmPath: "/run/shm",
  });
  const types = h.linux.namespaces.map((n) => n.type);
  assert.ok(!types.includes("network") && !types.includes("pid") && !types.includes("uts"));

  const c = containerSpec({
    id: "c",
    sandboxId: "sb",
    config: create(ContainerConfigSchema, {
      metadata: { name: "web" },
      image: { image: "busybox" },
      envs: [{ key: "A", value: "1" }],
      mounts: [{ containerPath: "/data", hostPath: "/srv", readonly: true }],
      linux: {
        resources: { cpuShares: 512n, memoryLimitInBytes: 1048576n },
        securityContext: {
          namespaceOptions: { pid: NamespaceMode.POD },
          runAsUser: { value: 1000n },
          capabilities: { addCapabilities: ["NET_ADMIN"], dropCapabilities: ["CHOWN"] },
        },
      },
    }),
    sandboxConfig: pod,
    image: { Cmd: ["sh"], Env: ["PATH=/bin"] },
    imageName: "busybox",
    sandboxPid: 42,
    hostsPath: "/p/hosts",
    resolvPath: "/p/resolv.conf",
    hostnamePath: "/p/hostname",
    shmPath: "/run/shm",
    devices: [],
    user: { uid: 1000, gid: 1000, additionalGids: [] },
  });
  const ns = Object.fromEntries(c.linux.namespaces.map((n) => [n.type, n.path]));
  assert.equal(ns.network, "/proc/42/ns/net");
  assert.equal(ns.ipc, "/proc/42/ns/ipc");
  assert.equal(ns.pid, "/proc/42/ns/pid");
  assert.equal(ns.mount, undefined, "a mount namespace of its own");
  assert.deepEqual(c.process.env, ["PATH=/bin", "A=1"]);
  assert.equal(c.process.user.uid, 1000);
  assert.ok(c.process.capabilities.bounding.includes("CAP_NET_ADMIN"));
  assert.ok(!c.process.capabilities.bounding.includes("CAP_CHOWN"));
  const data = c.mounts.find((m) => m.destination === "/data")!;
  assert.deepEqual(data.options, ["rbind", "rprivate", "ro"]);
  assert.ok(
    c.mounts.some((m) => m.destination === "/etc/resolv.conf" && m.source === "/p/resolv.conf"),
  );
  assert.equal(c.linux.resources.memory?.limit, 1048576);
  assert.equal((c.linux as { rootfsPropagation?: string }).rootfsPropagation, undefined);
  assert.equal(c.annotations?.["io.kubernetes.cri.sandbox-id"], "sb");
  assert.equal(c.annotations?.["io.kubernetes.cri.container-name"], "web");
});

Deno.test("cri store: names are reserved once; ids found by a unique prefix", () => {
  const idx = new Index<{ id: string }>("sandbox");
  idx.reserve("p_ns_u_0", "abc1");
  idx.reserve("p_ns_u_0", "abc1"); // the same holder again: fine
  assert.throws(
    () => idx.reserve("p_ns_u_0", "def2"),
    (e) => isCode(e, Code.AlreadyExists) && /is reserved for "abc1"/.test(String(e)),
  );
  idx.add({ id: "abc1" });
  idx.add({ id: "abd2" });
  assert.equal(idx.get("abc").id, "abc1");
  assert.throws(() => idx.get("ab"), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(() => idx.get("zz"), (e) => isCode(e, Code.NotFound));
  assert.throws(() => idx.get(""), (e) => isCode(e, Code.InvalidArgument));
  idx.release("p_ns_u_0");
  idx.reserve("p_ns_u_0", "def2");

  const st = { ...newRunStatus(), pid: 7, startedAt: 1_700_000_000_000_000_000n, exitCode: 3 };
  assert.deepEqual(decodeRunStatus(encodeRunStatus(st)), st);
});

Deno.test("cri user: names resolved in the image's passwd and group files, upper layers first", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-cri-user-" });
  try {
    for (const d of ["lower/etc", "upper/etc"]) {
      await Deno.mkdir(`${dir}/${d}`, { recursive: true });
    }
    await Deno.writeTextFile(`${dir}/lower/etc/passwd`, "root:x:0:0::/root:/bin/sh\n");
    await Deno.writeTextFile(
      `${dir}/upper/etc/passwd`,
      "root:x:0:0::/root:/bin/sh\nweb:x:33:34::/var/www:/bin/false\n",
    );
    await Deno.writeTextFile(
      `${dir}/lower/etc/group`,
      "root:x:0:\nwww:x:34:\nlogs:x:40:web,other\n",
    );
    const mounts = [{
      type: "overlay",
      source: "overlay",
      options: [`lowerdir=${dir}/lower`, `upperdir=${dir}/upper`, `workdir=${dir}/work`],
    }];
    const passwd = await readRootfsFile(mounts, "/etc/passwd");
    const group = await readRootfsFile(mounts, "/etc/group");
    assert.match(passwd!, /^web:/m, "the upper layer's file wins");
    assert.deepEqual(resolveUser("web", passwd, group), { uid: 33, gid: 34, additionalGids: [40] });
    assert.deepEqual(resolveUser("33:40", passwd, group), {
      uid: 33,
      gid: 40,
      additionalGids: [40],
    });
    assert.deepEqual(resolveUser("web:www", passwd, group).gid, 34);
    assert.deepEqual(resolveUser("5000", passwd, group), { uid: 5000, gid: 0, additionalGids: [] });
    assert.throws(
      () => resolveUser("nobody", passwd, group),
      (e) => isCode(e, Code.InvalidArgument),
    );
    assert.equal(await readRootfsFile(mounts, "/etc/shadow"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cri seccomp: containerd's choice of profile, and Docker's format as OCI's", () => {
  const sc = (init: Record<string, unknown>) => create(LinuxContainerSecurityContextSchema, init);
  assert.deepEqual(seccompChoice(undefined), { kind: "none" });
  assert.deepEqual(seccompChoice(sc({ seccompProfilePath: "unconfined" })), { kind: "none" });
  assert.deepEqual(seccompChoice(sc({ seccompProfilePath: "runtime/default" })), {
    kind: "default",
  });
  assert.deepEqual(seccompChoice(sc({ seccompProfilePath: "localhost//p.json" })), {
    kind: "localhost",
    path: "/p.json",
  });
  assert.deepEqual(
    seccompChoice(sc({ privileged: true, seccompProfilePath: "localhost//p.json" })),
    { kind: "none" },
  );
  assert.deepEqual(seccompChoice(sc({ seccomp: { profileType: 2, localhostRef: "/q.json" } })), {
    kind: "localhost",
    path: "/q.json",
  });
  assert.throws(() => seccompChoice(sc({ seccompProfilePath: "mine" })), /invalid profile/);
  assert.throws(
    () => seccompChoice(sc({ seccomp: { profileType: 1, localhostRef: "/q.json" } })),
    /LocalhostRef must only be set/,
  );
  const oci = ociSeccomp(
    JSON.stringify({
      defaultAction: "SCMP_ACT_ALLOW",
      archMap: [{ architecture: "SCMP_ARCH_X86_64", subArchitectures: ["SCMP_ARCH_X86"] }],
      syscalls: [{ name: "sethostname", action: "SCMP_ACT_ERRNO" }],
    }),
    "p.json",
  );
  assert.deepEqual(oci, {
    defaultAction: "SCMP_ACT_ALLOW",
    architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    syscalls: [{ names: ["sethostname"], action: "SCMP_ACT_ERRNO" }],
  });
  assert.throws(() => ociSeccomp("{}", "p.json"), /no defaultAction/);
});
