/**
 * berth's CRI plugin end to end: a daemon with the CRI section configured
 * (a pause image and busybox imported into k8s.io, pods' network
 * namespaces pinned under the test's state dir, a cgroup parent of the
 * test's own), driven with berth's gRPC client (the CRI runtime.v1 API:
 * pods, containers, logs, ExecSync, bad input, a daemon SIGKILL and
 * restart), then with cri-tools' crictl when it is on this machine.
 * Everything the test starts is stopped by pid, and it fails on a leaked
 * process, mount or network namespace.
 */
import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code, isCode } from "../src/errdefs/mod.ts";
import {
  type ContainerConfig,
  ContainerConfigSchema,
  ContainerState,
  LinuxContainerConfigSchema,
  type PodSandboxConfig,
  PodSandboxConfigSchema,
  PodSandboxState,
  RuntimeService,
} from "../src/gen/k8s/cri/runtime/v1/api_pb.ts";
import { GrpcClient } from "../src/grpc/mod.ts";
import { type DaemonProc, spawnDaemon, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { buildBusyboxImage, buildPauseImage, BUSYBOX_REF, PAUSE_REF } from "./support/image.ts";
import { mountsUnder, removeCgroup, unmountAllUnder } from "./support/mounts.ts";
import { isAlive, killNow, processesInCgroup, processesMentioning } from "./support/proc.ts";
import { forwardedPort } from "./support/streaming.ts";
import { runTool } from "./support/tool.ts";
import { run, spawn } from "../src/spawn/mod.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;
const CRICTL_CANDIDATES = ["/work/shared/tools/crictl", "../shared/tools/crictl"];
const M = RuntimeService.method;

/** A test's daemon, its paths, and a client on its socket. */
interface Env {
  tmp: string;
  address: string;
  config: string;
  cgroupParent: string;
  /** The CNI network's bridge, host-local data dir and subnet's first three octets. */
  bridge: string;
  ipamDir: string;
  prefix: string;
  daemon?: DaemonProc;
  client?: GrpcClient;
}

async function berth(env: Env, args: string[]): Promise<string> {
  const r = await runTool(
    Deno.execPath(),
    ["run", "-A", "--quiet", MOD, "-a", env.address, "-n", "k8s.io", ...args],
    { timeoutMs: 120_000 },
  );
  assert.equal(r.code, 0, `berth ${args.join(" ")}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function startDaemon(env: Env): Promise<GrpcClient> {
  env.daemon = spawnDaemon(["--config", env.config]);
  await waitForSocket(env.address, env.daemon);
  env.client = new GrpcClient(env.address);
  return env.client;
}

/** A third octet of 10.202.x.0/24 that no route of this machine uses yet. */
async function freeSubnet(): Promise<string> {
  const routes = new TextDecoder().decode((await run("ip", ["-4", "route", "show"])).stdout);
  for (;;) {
    const x = 1 + Math.floor(Math.random() * 254);
    if (!routes.includes(`10.202.${x}.`)) return `10.202.${x}`;
  }
}

/** Puts a bridge network (host-local addresses, portmap) of the test's own in conf_dir. */
async function writeConflist(env: Env): Promise<void> {
  const conflist = {
    cniVersion: "1.0.0",
    name: `berth-cri-${env.bridge}`,
    plugins: [
      {
        type: "bridge",
        bridge: env.bridge,
        isGateway: false,
        ipMasq: false,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: `${env.prefix}.0/24` }]],
          dataDir: env.ipamDir,
        },
      },
      { type: "portmap", capabilities: { portMappings: true } },
    ],
  };
  await Deno.writeTextFile(`${env.tmp}/net.d/10-test.conflist`, JSON.stringify(conflist));
}

async function setup(): Promise<Env> {
  const tmp = await Deno.makeTempDir({ prefix: "berth-cri-" });
  const tag = crypto.randomUUID().slice(0, 8);
  const env: Env = {
    tmp,
    address: `${tmp}/state/berth.sock`,
    config: `${tmp}/config.toml`,
    cgroupParent: `/berth-cri-${tag}`,
    bridge: `bcri${tag.slice(0, 6)}`,
    ipamDir: `${tmp}/ipam`,
    prefix: await freeSubnet(),
  };
  await Deno.mkdir(`${tmp}/net.d`);
  await Deno.writeTextFile(
    env.config,
    `version = 2
root = "${tmp}/root"
state = "${tmp}/state"
[grpc]
address = "${env.address}"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "${PAUSE_REF}"
netns_mounts_under_state_dir = true
restrict_oom_score_adj = true
[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/usr/lib/cni"
conf_dir = "${tmp}/net.d"
`,
  );
  return env;
}

async function teardown(env: Env): Promise<void> {
  await env.client?.close().catch(() => {});
  if (env.daemon) await stopDaemon(env.daemon);
  // Whatever a failed test left: its containers' processes, then its shims.
  await killNow(processesInCgroup(`${env.cgroupParent}/`).filter(isAlive));
  await killNow(processesMentioning(env.tmp).filter(isAlive));
  unmountAllUnder(env.tmp);
  removeCgroup(env.cgroupParent);
  await run("ip", ["link", "del", env.bridge]); // absent when no pod got that far
  await Deno.remove(env.tmp, { recursive: true });
}

/**
 * Stops the daemon (its warm spare shim goes with it), then fails unless
 * nothing the test made is left running or mounted.
 */
async function assertNothingLeft(env: Env): Promise<void> {
  await env.client?.close();
  env.client = undefined;
  if (env.daemon) assert.equal((await stopDaemon(env.daemon)).code, 0, env.daemon.log());
  env.daemon = undefined;
  assert.deepEqual(processesInCgroup(`${env.cgroupParent}/`).filter(isAlive), [], "processes");
  const shims = processesMentioning(`${env.tmp}/state`).filter(isAlive);
  assert.deepEqual(shims, [], "shims");
  assert.deepEqual(mountsUnder(env.tmp), [], "mounts (netns, shm, rootfs)");
  const netns = [...Deno.readDirSync(`${env.tmp}/state/io.containerd.grpc.v1.cri/netns`)];
  assert.deepEqual(netns.map((e) => e.name), [], "pinned network namespaces");
  let leased: string[] = [];
  try {
    leased = [...Deno.readDirSync(`${env.ipamDir}/berth-cri-${env.bridge}`)].map((e) => e.name)
      .filter((n) => /^\d+\.\d+\.\d+\.\d+$/.test(n));
  } catch { /* no address was ever given out */ }
  assert.deepEqual(leased, [], "host-local addresses freed");
}

function podConfig(env: Env, name: string, logDir: string): PodSandboxConfig {
  return create(PodSandboxConfigSchema, {
    metadata: { name, namespace: "default", uid: `uid-${name}`, attempt: 0 },
    hostname: `host-${name}`,
    logDirectory: logDir,
    dnsConfig: { servers: ["10.0.0.10"], searches: ["svc.cluster.local"], options: ["ndots:5"] },
    labels: { app: name },
    linux: { cgroupParent: env.cgroupParent, sysctls: { "net.ipv4.ip_forward": "1" } },
  });
}

function containerConfig(name: string, command: string[]): ContainerConfig {
  return create(ContainerConfigSchema, {
    metadata: { name, attempt: 0 },
    image: { image: BUSYBOX_REF },
    command,
    envs: [{ key: "GREETING", value: "hello" }],
    logPath: `${name}.log`,
    labels: { role: name },
  });
}

const decode = (b: Uint8Array) => new TextDecoder().decode(b);

async function waitFor(what: string, ok: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await ok()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

Deno.test("cri: pods and containers through berth's gRPC client, bad input, restart", async () => {
  const env = await setup();
  try {
    const c = await startDaemon(env);
    const [busybox, pause] = [await buildBusyboxImage(env.tmp), await buildPauseImage(env.tmp)];
    await berth(env, ["images", "import", busybox.archive]);
    await berth(env, ["images", "import", pause.archive]);

    const v = await c.unary(M.version, {});
    assert.equal(v.runtimeName, "berth");
    assert.equal(v.runtimeApiVersion, "v1");
    const st = await c.unary(M.status, {});
    const cond = Object.fromEntries(st.status!.conditions.map((x) => [x.type, x]));
    assert.equal(cond.RuntimeReady.status, true);
    assert.equal(cond.NetworkReady.status, false);
    assert.equal(cond.NetworkReady.reason, "NetworkPluginNotReady");
    assert.match(cond.NetworkReady.message, /cni/i);
    // Without a network configuration a pod cannot start (containerd says the same).
    await assert.rejects(
      c.unary(M.runPodSandbox, { config: podConfig(env, "early", `${env.tmp}/logs`) }),
      (e) => isCode(e, Code.FailedPrecondition) && /cni|network/i.test(String(e)),
    );
    await writeConflist(env);
    const ready = await c.unary(M.status, {});
    assert.ok(ready.status!.conditions.find((x) => x.type === "NetworkReady")!.status);
    await c.unary(M.updateRuntimeConfig, {
      runtimeConfig: { networkConfig: { podCidr: "10.88.0.0/16" } },
    });

    // Bad input: the codes containerd's CRI answers, and nothing made.
    await assert.rejects(
      c.unary(M.runPodSandbox, { config: { hostname: "x" } }),
      (e) => isCode(e, Code.InvalidArgument) && /metadata/.test(String(e)),
    );
    const logs = `${env.tmp}/logs`;
    await assert.rejects(
      c.unary(M.runPodSandbox, {
        config: podConfig(env, "bad", logs),
        runtimeHandler: "no-such-handler",
      }),
      (e) => isCode(e, Code.NotFound) && /no runtime for "no-such-handler"/.test(String(e)),
    );
    await assert.rejects(
      c.unary(M.createContainer, {
        podSandboxId: "0123456789ab",
        config: containerConfig("c", ["true"]),
      }),
      (e) => isCode(e, Code.NotFound),
    );

    const p1 = podConfig(env, "p1", logs);
    const { podSandboxId: pod } = await c.unary(M.runPodSandbox, { config: p1 });
    await assert.rejects(
      c.unary(M.runPodSandbox, { config: p1 }),
      (e) => isCode(e, Code.AlreadyExists) && /is reserved for/.test(String(e)),
    );
    const unknownImage = containerConfig("nope", ["true"]);
    unknownImage.image!.image = "docker.io/library/not-here:1";
    await assert.rejects(
      c.unary(M.createContainer, { podSandboxId: pod, config: unknownImage, sandboxConfig: p1 }),
      (e) => isCode(e, Code.NotFound) && /not-here/.test(String(e)),
    );
    assert.equal((await c.unary(M.listContainers, {})).containers.length, 0, "nothing half-made");
    await assert.rejects(
      c.unary(M.createContainer, { podSandboxId: pod, config: { image: {} }, sandboxConfig: p1 }),
      (e) => isCode(e, Code.InvalidArgument),
    );

    const ps = await c.unary(M.podSandboxStatus, { podSandboxId: pod, verbose: true });
    assert.equal(ps.status!.state, PodSandboxState.SANDBOX_READY);
    assert.equal(ps.status!.metadata!.name, "p1");
    const info = JSON.parse(ps.info.info);
    assert.ok(info.pid > 0);
    assert.equal(info.runtimeSpec.annotations["io.kubernetes.cri.container-type"], "sandbox");
    assert.equal(info.runtimeSpec.annotations["io.kubernetes.cri.sandbox-id"], pod);
    assert.equal(info.runtimeSpec.linux.sysctl["net.ipv4.ip_forward"], "1");
    assert.equal(info.runtimeSpec.linux.cgroupsPath, `${env.cgroupParent}/${pod}`);

    // A container: output to its CRI log, the pod's hostname, DNS and env.
    const script = "echo out-line; echo err-line >&2; hostname; cat /etc/resolv.conf; " +
      'echo "$GREETING"; trap "exit 7" TERM; while true; do sleep 0.1; done';
    const cfg = containerConfig("c1", ["sh", "-c", script]);
    const { containerId: c1 } = await c.unary(M.createContainer, {
      podSandboxId: pod,
      config: cfg,
      sandboxConfig: p1,
    });
    const status = async (id: string) =>
      (await c.unary(M.containerStatus, { containerId: id })).status!;
    assert.equal((await status(c1)).state, ContainerState.CONTAINER_CREATED);
    await assert.rejects(
      c.unary(M.createContainer, { podSandboxId: pod, config: cfg, sandboxConfig: p1 }),
      (e) => isCode(e, Code.AlreadyExists),
    );
    await c.unary(M.startContainer, { containerId: c1 });
    assert.equal((await status(c1)).state, ContainerState.CONTAINER_RUNNING);
    const logPath = `${logs}/c1.log`;
    await waitFor("the log", async () => (await Deno.readTextFile(logPath)).includes("hello"));
    const lines = (await Deno.readTextFile(logPath)).trimEnd().split("\n");
    for (const l of lines) {
      assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z (stdout|stderr) F /, l);
    }
    const text = lines.map((l) => l.split(" ").slice(1).join(" "));
    assert.ok(text.includes("stdout F out-line"), text.join("\n"));
    assert.ok(text.includes("stderr F err-line"), text.join("\n"));
    assert.ok(text.includes("stdout F host-p1"), text.join("\n"));
    assert.ok(text.includes("stdout F nameserver 10.0.0.10"), text.join("\n"));
    assert.ok(text.includes("stdout F search svc.cluster.local"), text.join("\n"));

    const ex = await c.unary(M.execSync, {
      containerId: c1,
      cmd: ["sh", "-c", "echo in-exec; echo oops >&2; exit 3"],
      timeout: 10n,
    });
    assert.equal(decode(ex.stdout), "in-exec\n");
    assert.equal(decode(ex.stderr), "oops\n");
    assert.equal(ex.exitCode, 3);
    await assert.rejects(
      c.unary(M.execSync, { containerId: c1, cmd: ["sleep", "30"], timeout: 1n }),
      (e) => isCode(e, Code.DeadlineExceeded),
    );

    // The pod's IP from CNI, seen inside; a second pod reaches it over the bridge.
    const ip1 = (await c.unary(M.podSandboxStatus, { podSandboxId: pod })).status!.network!.ip;
    assert.match(ip1, new RegExp(`^${env.prefix.replaceAll(".", "\\.")}\\.\\d+$`));
    const addr = await c.unary(M.execSync, {
      containerId: c1,
      cmd: ["ip", "-4", "addr", "show", "eth0"],
      timeout: 10n,
    });
    assert.match(decode(addr.stdout), new RegExp(`inet ${ip1}/24`));
    const p3 = podConfig(env, "p3", logs);
    const { podSandboxId: pod3 } = await c.unary(M.runPodSandbox, { config: p3 });
    const { containerId: c3 } = await c.unary(M.createContainer, {
      podSandboxId: pod3,
      config: containerConfig("c3", ["sleep", "300"]),
      sandboxConfig: p3,
    });
    await c.unary(M.startContainer, { containerId: c3 });
    const ping = await c.unary(M.execSync, {
      containerId: c3,
      cmd: ["ping", "-c", "1", "-W", "5", ip1],
      timeout: 10n,
    });
    assert.equal(ping.exitCode, 0, decode(ping.stdout) + decode(ping.stderr));
    await c.unary(M.removeContainer, { containerId: c3 }); // running: killed first
    assert.equal((await c.unary(M.listContainers, { filter: { id: c3 } })).containers.length, 0);
    await c.unary(M.stopPodSandbox, { podSandboxId: pod3 });
    await c.unary(M.removePodSandbox, { podSandboxId: pod3 });

    const cs = (await c.unary(M.containerStats, { containerId: c1 })).stats!;
    assert.equal(cs.attributes!.id, c1);
    assert.ok(cs.cpu!.usageCoreNanoSeconds!.value > 0n, "cpu time");
    assert.ok(cs.memory!.workingSetBytes!.value > 0n, "working set");
    assert.ok(cs.writableLayer!.usedBytes !== undefined);
    const lcs = await c.unary(M.listContainerStats, { filter: { podSandboxId: pod } });
    assert.deepEqual(lcs.stats.map((x) => x.attributes!.id), [c1]);
    const pst = (await c.unary(M.podSandboxStats, { podSandboxId: pod })).stats!;
    assert.equal(pst.attributes!.id, pod);
    assert.equal(pst.linux!.containers.length, 1);
    assert.ok(pst.linux!.cpu!.usageCoreNanoSeconds!.value >= cs.cpu!.usageCoreNanoSeconds!.value);
    assert.equal((await c.unary(M.listPodSandboxStats, {})).stats.length, 1);

    await c.unary(M.updateContainerResources, {
      containerId: c1,
      linux: { memoryLimitInBytes: 64n << 20n },
    });
    const limit = await Deno.readTextFile(
      `/sys/fs/cgroup/memory${env.cgroupParent}/${c1}/memory.limit_in_bytes`,
    ).catch(() => Deno.readTextFile(`/sys/fs/cgroup${env.cgroupParent}/${c1}/memory.max`));
    assert.equal(Number(limit.trim()), 64 << 20);

    const listed = await c.unary(M.listContainers, {
      filter: { podSandboxId: pod, labelSelector: { role: "c1" } },
    });
    assert.deepEqual(listed.containers.map((x) => x.id), [c1]);
    const none = await c.unary(M.listContainers, {
      filter: { state: { state: ContainerState.CONTAINER_EXITED } },
    });
    assert.equal(none.containers.length, 0);
    assert.match(await berth(env, ["containers", "ls"]), new RegExp(c1));

    const groupOnly = containerConfig("g", ["true"]);
    groupOnly.linux = create(LinuxContainerConfigSchema, {
      securityContext: { runAsGroup: { value: 5n } },
    });
    await assert.rejects(
      c.unary(M.createContainer, { podSandboxId: pod, config: groupOnly, sandboxConfig: p1 }),
      (e) => isCode(e, Code.InvalidArgument) && /group is specified without user/.test(String(e)),
    );

    // A localhost seccomp profile (Docker's format) that refuses chmod; a bad profile path.
    const profile = `${env.tmp}/no-chmod.json`;
    await Deno.writeTextFile(
      profile,
      JSON.stringify({
        defaultAction: "SCMP_ACT_ALLOW",
        syscalls: [{ names: ["chmod", "fchmod", "fchmodat"], action: "SCMP_ACT_ERRNO" }],
      }),
    );
    const confined = containerConfig("sc", ["sleep", "300"]);
    confined.linux = create(LinuxContainerConfigSchema, {
      securityContext: { seccompProfilePath: `localhost/${profile}` },
    });
    const { containerId: sc } = await c.unary(M.createContainer, {
      podSandboxId: pod,
      config: confined,
      sandboxConfig: p1,
    });
    await c.unary(M.startContainer, { containerId: sc });
    const chmod = await c.unary(M.execSync, { containerId: sc, cmd: ["chmod", "400", "/"] });
    assert.notEqual(chmod.exitCode, 0, "chmod refused by the profile");
    await c.unary(M.removeContainer, { containerId: sc });
    // The runtime's default profile: unshare needs CAP_SYS_ADMIN there, which the container
    // lacks; a new user namespace needs no capability, so unconfined it is made.
    for (const [path, ok] of [["runtime/default", false], ["unconfined", true]] as const) {
      const cfg = containerConfig(`sd-${ok}`, ["sleep", "300"]);
      cfg.linux = create(LinuxContainerConfigSchema, {
        securityContext: { seccompProfilePath: path },
      });
      const { containerId } = await c.unary(M.createContainer, {
        podSandboxId: pod,
        config: cfg,
        sandboxConfig: p1,
      });
      await c.unary(M.startContainer, { containerId });
      const r = await c.unary(M.execSync, { containerId, cmd: ["unshare", "-U", "true"] });
      const err = new TextDecoder().decode(r.stderr);
      if (ok) assert.equal(r.exitCode, 0, `unshare -U unconfined: ${err}`);
      else {
        assert.notEqual(r.exitCode, 0, "unshare refused by runtime/default");
        assert.match(err, /Operation not permitted/);
      }
      await c.unary(M.stopContainer, { containerId, timeout: 0n });
      await c.unary(M.removeContainer, { containerId });
    }
    confined.linux!.securityContext!.seccompProfilePath = "custom-profile";
    await assert.rejects(
      c.unary(M.createContainer, { podSandboxId: pod, config: confined, sandboxConfig: p1 }),
      (e) => isCode(e, Code.InvalidArgument) && /invalid profile/.test(String(e)),
    );

    // Stop: SIGTERM, which its trap answers with exit 7.
    await c.unary(M.stopContainer, { containerId: c1, timeout: 10n });
    const stopped = await status(c1);
    assert.equal(stopped.state, ContainerState.CONTAINER_EXITED);
    assert.equal(stopped.exitCode, 7);
    assert.equal(stopped.reason, "Error");
    assert.ok(stopped.finishedAt >= stopped.startedAt && stopped.startedAt > 0n);
    await c.unary(M.removeContainer, { containerId: c1 });
    await c.unary(M.removeContainer, { containerId: c1 }); // removed already: fine

    // A stop right after the start, before the program traps TERM: as its pid
    // namespace's init it would never see a signal sent then (the stop would
    // end in SIGKILL, 137, after the whole timeout); the stop waits for the trap.
    const { containerId: late } = await c.unary(M.createContainer, {
      podSandboxId: pod,
      config: containerConfig("late", [
        "sh",
        "-c",
        'sleep 0.5; trap "exit 7" TERM; while true; do sleep 0.1; done',
      ]),
      sandboxConfig: p1,
    });
    await c.unary(M.startContainer, { containerId: late });
    await c.unary(M.stopContainer, { containerId: late, timeout: 30n });
    assert.equal((await status(late)).exitCode, 7, "the trap took the stop signal");
    await c.unary(M.removeContainer, { containerId: late });

    // A second container, left running across a daemon SIGKILL and restart.
    const { containerId: c2 } = await c.unary(M.createContainer, {
      podSandboxId: pod,
      config: containerConfig("c2", ["sh", "-c", "while true; do echo tick; sleep 0.2; done"]),
      sandboxConfig: p1,
    });
    await c.unary(M.startContainer, { containerId: c2 });
    await env.client!.close();
    env.client = undefined;
    env.daemon!.child.kill("SIGKILL");
    await env.daemon!.done;
    env.daemon = undefined;
    const c2b = await startDaemon(env);
    const pods = await c2b.unary(M.listPodSandbox, {
      filter: { state: { state: PodSandboxState.SANDBOX_READY } },
    });
    assert.deepEqual(pods.items.map((p) => p.id), [pod]);
    assert.equal(
      (await c2b.unary(M.containerStatus, { containerId: c2 })).status!.state,
      ContainerState.CONTAINER_RUNNING,
    );
    // Its output keeps reaching the log through the restarted daemon.
    const before = (await Deno.readTextFile(`${logs}/c2.log`)).length;
    await waitFor(
      "output after the restart",
      async () => (await Deno.readTextFile(`${logs}/c2.log`)).length > before,
    );

    await c2b.unary(M.stopPodSandbox, { podSandboxId: pod });
    await c2b.unary(M.stopPodSandbox, { podSandboxId: pod }); // idempotent
    assert.equal(
      (await c2b.unary(M.containerStatus, { containerId: c2 })).status!.state,
      ContainerState.CONTAINER_EXITED,
    );
    assert.equal(
      (await c2b.unary(M.podSandboxStatus, { podSandboxId: pod })).status!.state,
      PodSandboxState.SANDBOX_NOTREADY,
    );
    await c2b.unary(M.removePodSandbox, { podSandboxId: pod });
    assert.equal((await c2b.unary(M.listPodSandbox, {})).items.length, 0);
    assert.equal((await c2b.unary(M.listContainers, {})).containers.length, 0);
    await assert.rejects(
      c2b.unary(M.podSandboxStatus, { podSandboxId: pod }),
      (e) => isCode(e, Code.NotFound),
    );
    assert.doesNotMatch(await berth(env, ["containers", "ls"]), new RegExp(pod));

    // The "runc" handler: containerd's Go shim serves the pod, its containers in the same shim.
    const p2 = podConfig(env, "p2", logs);
    const { podSandboxId: goPod } = await c2b.unary(M.runPodSandbox, {
      config: p2,
      runtimeHandler: "runc",
    });
    const { containerId: goCtr } = await c2b.unary(M.createContainer, {
      podSandboxId: goPod,
      config: containerConfig("g1", ["sleep", "300"]),
      sandboxConfig: p2,
    });
    await c2b.unary(M.startContainer, { containerId: goCtr });
    const goEx = await c2b.unary(M.execSync, {
      containerId: goCtr,
      cmd: ["hostname"],
      timeout: 10n,
    });
    assert.equal(decode(goEx.stdout), "host-p2\n");
    const goShims = processesMentioning(env.tmp).filter((
      p,
    ) => (Deno.readTextFileSync(`/proc/${p}/cmdline`).includes("containerd-shim-runc-v2")));
    assert.equal(goShims.length, 1, "one Go shim serves the pod and its container");
    await c2b.unary(M.stopPodSandbox, { podSandboxId: goPod });
    await c2b.unary(M.removePodSandbox, { podSandboxId: goPod });
    await assertNothingLeft(env);
  } catch (err) {
    throw new Error(
      `${err instanceof Error ? err.stack : err}\n--- daemon log ---\n${env.daemon?.log()}`,
    );
  } finally {
    await teardown(env);
  }
});

function findCrictl(): string | undefined {
  for (const p of CRICTL_CANDIDATES) {
    try {
      if (Deno.statSync(p).isFile) return p;
    } catch { /* not here */ }
  }
  return undefined;
}

Deno.test("cri: crictl runp/create/start/exec/logs/inspect/stop/rm/stopp/rmp", async () => {
  const crictl = findCrictl();
  if (crictl === undefined) {
    console.log("skipped: crictl not found");
    return;
  }
  const env = await setup();
  try {
    await startDaemon(env);
    const [busybox, pause] = [await buildBusyboxImage(env.tmp), await buildPauseImage(env.tmp)];
    await berth(env, ["images", "import", busybox.archive]);
    await berth(env, ["images", "import", pause.archive]);
    const ep = `unix://${env.address}`;
    const cc = async (args: string[], expectOk = true, input?: string) => {
      const r = await runTool(crictl, ["-r", ep, "-i", ep, "-t", "30s", ...args], {
        timeoutMs: 60_000,
        input,
      });
      if (expectOk) {
        assert.equal(r.code, 0, `crictl ${args.join(" ")}:\n${r.stdout}\n${r.stderr}`);
      }
      return r;
    };
    const logs = `${env.tmp}/logs`;
    await Deno.writeTextFile(
      `${env.tmp}/pod.json`,
      JSON.stringify({
        metadata: { name: "cp", namespace: "default", uid: "uid-cp", attempt: 0 },
        hostname: "crictl-pod",
        log_directory: logs,
        linux: { cgroup_parent: env.cgroupParent },
      }),
    );
    await Deno.writeTextFile(
      `${env.tmp}/ctr.json`,
      JSON.stringify({
        metadata: { name: "cc" },
        image: { image: BUSYBOX_REF },
        command: ["sh", "-c", "echo from-crictl; trap 'exit 0' TERM; sleep 3600 & wait"],
        log_path: "cc.log",
        linux: {},
      }),
    );
    await writeConflist(env);
    const pod = (await cc(["runp", `${env.tmp}/pod.json`])).stdout.trim();
    assert.match(pod, /^[0-9a-f]{64}$/);
    assert.match((await cc(["pods"])).stdout, /Ready\s+cp\s+default/);
    const ctr = (await cc(["create", pod, `${env.tmp}/ctr.json`, `${env.tmp}/pod.json`])).stdout
      .trim();
    await cc(["start", ctr]);
    const ex = await cc(["exec", "-s", ctr, "sh", "-c", "hostname; echo $GREETING-x"]);
    assert.equal(ex.stdout.trimEnd(), "crictl-pod\n-x"); // crictl adds a line per stream
    await waitFor(
      "crictl logs",
      async () => (await cc(["logs", ctr])).stdout.includes("from-crictl"),
    );
    const stats = JSON.parse((await cc(["stats", "-o", "json", "--id", ctr])).stdout);
    assert.equal(stats.stats[0].attributes.id, ctr);
    assert.ok(Number(stats.stats[0].memory.workingSetBytes.value) > 0);
    assert.match((await cc(["ps"])).stdout, new RegExp(`${ctr.slice(0, 13)}.*Running\\s+cc`));
    assert.match((await cc(["images"])).stdout, /docker\.io\/library\/busybox\s+berth/);

    // Streaming: exec with stdin, exec in a terminal (crictl under script(1) for a pty).
    const upper = await cc(["exec", "-i", ctr, "sh", "-c", "tr a-z A-Z; echo done"], true, "ab\n");
    assert.equal(upper.stdout, "AB\ndone\n");
    const inner = [crictl, "-r", ep, "-t", "30s", "exec", "-it", ctr, "sh", "-c", "tty; stty size"];
    const tty = await runTool("script", [
      "-qec",
      `stty cols 91 rows 27; ${inner.join(" ")}`,
      "/dev/null",
    ], {
      timeoutMs: 60_000,
    });
    assert.equal(tty.code, 0, tty.stdout + tty.stderr);
    assert.match(tty.stdout, /\/dev\/pts\/\d+\r?\n27 91/);

    const inspect = JSON.parse((await cc(["inspect", ctr])).stdout);
    assert.equal(inspect.status.state, "CONTAINER_RUNNING");
    assert.equal(inspect.info.sandboxID, pod);
    const inspectp = JSON.parse((await cc(["inspectp", pod])).stdout);
    assert.equal(inspectp.status.state, "SANDBOX_READY");
    await cc(["stop", "-t", "10", ctr]);
    assert.equal(JSON.parse((await cc(["inspect", ctr])).stdout).status.exitCode, 0);
    await cc(["rm", ctr]);
    // Port forwarding into the pod's network namespace: a web server of busybox in the pod.
    await Deno.writeTextFile(
      `${env.tmp}/web.json`,
      JSON.stringify({
        metadata: { name: "web" },
        image: { image: BUSYBOX_REF },
        command: [
          "sh",
          "-c",
          "mkdir /www; echo served-in-pod > /www/index.html; httpd -f -p 8080 -h /www",
        ],
        log_path: "web.log",
        linux: {},
      }),
    );
    const web = (await cc(["create", pod, `${env.tmp}/web.json`, `${env.tmp}/pod.json`])).stdout
      .trim();
    await cc(["start", web]);
    const fwd = spawn(crictl, ["-r", ep, "port-forward", pod, "0:8080"], {
      stdout: "piped",
      stderr: "piped",
    });
    try {
      const local = await forwardedPort(fwd);
      let body = "";
      await waitFor("the forwarded web server", async () => {
        body = await fetch(`http://127.0.0.1:${local}/index.html`).then((r) => r.text(), () => "");
        return body.includes("served-in-pod");
      });
    } finally {
      fwd.kill("SIGTERM");
      await fwd.status;
      await fwd.stderr.cancel().catch(() => {});
    }
    await cc(["stop", web]);
    await cc(["rm", web]);

    // Attach to a container created with stdin: what is typed reaches it, its output comes back.
    await Deno.writeTextFile(
      `${env.tmp}/att.json`,
      JSON.stringify({
        metadata: { name: "att" },
        image: { image: BUSYBOX_REF },
        command: ["sh", "-c", "read line; echo got $line"],
        stdin: true,
        log_path: "att.log",
        linux: {},
      }),
    );
    const att = (await cc(["create", pod, `${env.tmp}/att.json`, `${env.tmp}/pod.json`])).stdout
      .trim();
    await cc(["start", att]);
    const attached = await cc(["attach", "-i", att], true, "there\n");
    assert.equal(attached.stdout, "got there\n");
    await waitFor(
      "the attached container to exit",
      async () =>
        JSON.parse((await cc(["inspect", att])).stdout).status.state === "CONTAINER_EXITED",
    );
    await cc(["rm", att]);

    await cc(["stopp", pod]);
    await cc(["rmp", pod]);
    assert.doesNotMatch((await cc(["pods"])).stdout, /cp/);
    const missing = await cc(["inspectp", pod], false);
    assert.notEqual(missing.code, 0);
    assert.match(missing.stderr, /NotFound|not found/);
    await assertNothingLeft(env);
  } catch (err) {
    throw new Error(
      `${err instanceof Error ? err.stack : err}\n--- daemon log ---\n${env.daemon?.log()}`,
    );
  } finally {
    await teardown(env);
  }
});
