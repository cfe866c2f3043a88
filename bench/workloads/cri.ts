/**
 * Workload 9: the CRI, as the kubelet drives it, through cri-tools' crictl
 * against berth's CRI plugin and containerd 1.6's, side by side in one run.
 * Each side is a daemon of its own with the CRI enabled (the pause and
 * busybox images imported into k8s.io, a bridge network of its own with
 * host-local addresses, pods in a cgroup parent of its own). Lifecycle
 * latencies (runp, create+start, stop+rm, stopp+rmp) in interleaved rounds;
 * memory (daemon + shims PSS) with N pods of 2 running containers. Without
 * crictl every figure is n/a.
 * @module
 */

import { type BenchContext, berthBlocked, type Workload } from "../context.ts";
import { type Figure, figure, measured, notMeasured, type Side } from "../figures.ts";
import { berthBinary, type Engine, startBerthEngine } from "../engines.ts";
import { startContainerd } from "../../tests/support/containerd.ts";
import { buildPauseImage, BUSYBOX_REF, PAUSE_REF } from "../../tests/support/image.ts";
import { removeCgroup } from "../../tests/support/mounts.ts";
import {
  childrenOf,
  findProcesses,
  killNow,
  parentOf,
  processesInCgroup,
  pssKiB,
} from "../../tests/support/proc.ts";
import { runTool } from "../../tests/support/tool.ts";
import { run as runCmd } from "../../src/spawn/mod.ts";
import { existsSync } from "../../src/fsutil/mod.ts";
import { check } from "./run.ts";

/** The lifecycle steps timed, each one or two crictl calls. */
const STEPS = ["runp", "create+start", "stop+rm", "stopp+rmp"] as const;
type Step = typeof STEPS[number];

/** One side: a CRI endpoint, where its pods live, and how to undo it. */
interface CriSide {
  name: "berth" | "containerd";
  endpoint: string;
  daemonPid: number;
  /** The daemon's temporary directory (its processes name it). */
  dir: string;
  cgroupParent: string;
  stop(): Promise<void>;
}

/** crictl: $CRICTL, the project's shared tools beside the repository (or its main clone), PATH. */
export function findCrictl(repoRoot: string): string | undefined {
  const candidates = [
    Deno.env.get("CRICTL"),
    `${repoRoot}/../shared/tools/crictl`,
    `${repoRoot}/../../shared/tools/crictl`,
    ...(Deno.env.get("PATH") ?? "").split(":").filter(Boolean).map((d) => `${d}/crictl`),
  ];
  return candidates.find((p): p is string => p !== undefined && p !== "" && existsSync(p));
}

function tag(): string {
  return [...crypto.getRandomValues(new Uint8Array(3))]
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A 10.204.x.0/24 no route of this machine uses. */
async function freePrefix(taken: string[]): Promise<string> {
  const routes = new TextDecoder().decode((await runCmd("ip", ["-4", "route", "show"])).stdout);
  for (;;) {
    const p = `10.204.${1 + Math.floor(Math.random() * 254)}`;
    if (!routes.includes(`${p}.`) && !taken.includes(p)) return p;
  }
}

/** A bridge network (no gateway, no NAT: nothing in iptables, no ip_forward), IPAM in `dir`. */
function conflist(dir: string, bridge: string, prefix: string): string {
  return JSON.stringify({
    cniVersion: "1.0.0",
    name: `bench-${bridge}`,
    plugins: [{
      type: "bridge",
      bridge,
      isGateway: false,
      ipMasq: false,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: `${prefix}.0/24` }]],
        dataDir: `${dir}/ipam`,
      },
    }],
  });
}

/** The CRI section both daemons get (containerd's TOML shape), for the paths of `dir`. */
function criToml(dir: string, restrictOom: boolean, runtime: string): string {
  return `[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "${PAUSE_REF}"
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  restrict_oom_score_adj = ${restrictOom}
  netns_mounts_under_state_dir = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "${dir}/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "bench"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.bench]
      runtime_type = "${runtime}"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.bench.options]
        Root = "${dir}/runc"
`;
}

/** Whether this process may lower oom_score_adj (CAP_SYS_RESOURCE in its bounding set). */
function canLowerOom(): boolean {
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(Deno.readTextFileSync("/proc/self/status"));
  return m !== null && (BigInt(`0x${m[1]}`) & (1n << 24n)) !== 0n;
}

async function crictl(
  bin: string,
  endpoint: string,
  args: string[],
): Promise<{ stdout: string; ms: number }> {
  const r = await runTool(bin, ["--timeout", "60s", "-r", endpoint, "-i", endpoint, ...args], {
    timeoutMs: 90_000,
  });
  check(`crictl ${args[0]}`, r);
  return { stdout: r.stdout.trim(), ms: r.ms };
}

/** Waits until the side's CRI answers `info` with NetworkReady true. */
async function waitReady(bin: string, side: CriSide): Promise<void> {
  const deadline = Date.now() + 30_000;
  let last = "";
  while (Date.now() < deadline) {
    const r = await runTool(bin, ["--timeout", "5s", "-r", side.endpoint, "info"], {
      timeoutMs: 10_000,
    });
    last = r.stderr.trim() || r.stdout.slice(0, 200);
    if (r.code === 0 && /"type":\s*"NetworkReady",\s*"status":\s*true/.test(r.stdout)) return;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`${side.name} CRI not ready in 30 s: ${last}`);
}

/** Removes what a side's pods may leave outside its directory: the bridge, the cgroup parent. */
async function removeNetworkAndCgroups(bridge: string, cgroupParent: string): Promise<void> {
  const left = processesInCgroup(`${cgroupParent}/`);
  if (left.length > 0) await killNow(left);
  removeCgroup(cgroupParent);
  await runCmd("ip", ["link", "del", bridge]).catch(() => {});
}

async function startContainerdSide(images: string[]): Promise<CriSide> {
  const t = tag();
  const bridge = `bbc${t}`, cgroupParent = `/berth-bench-cri-c${t}`;
  const prefix = await freePrefix([]);
  const inst = await startContainerd({
    cri: true,
    namespace: `bcri${t}`,
    config: (dir) => {
      // Written before containerd starts, which reads conf_dir at once.
      Deno.mkdirSync(`${dir}/net.d`, { recursive: true });
      Deno.mkdirSync(`${dir}/ipam`, { recursive: true });
      Deno.writeTextFileSync(`${dir}/net.d/10-bench.conflist`, conflist(dir, bridge, prefix));
      return criToml(dir, !canLowerOom(), "io.containerd.runc.v2");
    },
  });
  const endpoint = `unix://${inst.address}`;
  for (const archive of images) {
    check(
      "ctr -n k8s.io images import",
      await runTool(
        "ctr",
        ["--address", inst.address, "-n", "k8s.io", "images", "import", archive],
        {
          timeoutMs: 120_000,
        },
      ),
    );
  }
  return {
    name: "containerd",
    endpoint,
    daemonPid: inst.pid,
    dir: inst.dir,
    cgroupParent,
    stop: async () => {
      await inst.stop();
      await removeNetworkAndCgroups(bridge, cgroupParent);
      // libcni's result cache of this network, kept outside containerd's paths.
      for (const e of safeReadDir("/var/lib/cni/results")) {
        if (e.startsWith(`bench-${bridge}-`)) {
          await Deno.remove(`/var/lib/cni/results/${e}`).catch(() => {});
        }
      }
    },
  };
}

function safeReadDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name);
  } catch {
    return [];
  }
}

async function startBerthSide(ctx: BenchContext, images: string[]): Promise<CriSide> {
  const t = tag();
  const bridge = `bbb${t}`, cgroupParent = `/berth-bench-cri-b${t}`;
  const prefix = await freePrefix([]);
  const engine: Engine = await startBerthEngine(ctx.binDir, {
    config: (dir) => {
      Deno.mkdirSync(`${dir}/net.d`, { recursive: true });
      Deno.mkdirSync(`${dir}/ipam`, { recursive: true });
      Deno.writeTextFileSync(`${dir}/net.d/10-bench.conflist`, conflist(dir, bridge, prefix));
      return `version = 2\n${criToml(dir, !canLowerOom(), "io.containerd.berth.v2")}`;
    },
  });
  const stop = async () => {
    await engine.stop();
    await removeNetworkAndCgroups(bridge, cgroupParent);
  };
  if (engine.unavailable !== null || engine.daemonPid === null) {
    await stop();
    throw new Error(engine.unavailable ?? "berth daemon did not start");
  }
  for (const archive of images) {
    check(
      "berth -n k8s.io images import",
      await runTool(berthBinary(ctx.binDir), [
        "--address",
        engine.address,
        "--namespace",
        "k8s.io",
        "images",
        "import",
        archive,
      ], { timeoutMs: 120_000 }),
    );
  }
  return {
    name: "berth",
    endpoint: `unix://${engine.address}`,
    daemonPid: engine.daemonPid,
    dir: engine.dir,
    cgroupParent,
    stop,
  };
}

/** Pod and container configs (crictl's JSON) for pod `name` of a side, written under `work`. */
async function writeConfigs(
  work: string,
  side: CriSide,
  name: string,
): Promise<{ pod: string; ctr: (n: string) => Promise<string> }> {
  const logs = `${work}/logs/${name}`;
  await Deno.mkdir(logs, { recursive: true });
  const pod = `${work}/${name}.pod.json`;
  await Deno.writeTextFile(
    pod,
    JSON.stringify({
      metadata: { name, namespace: "bench", uid: `${name}-uid`, attempt: 1 },
      log_directory: logs,
      linux: { cgroup_parent: side.cgroupParent },
    }),
  );
  const ctr = async (n: string) => {
    const path = `${work}/${name}.${n}.json`;
    await Deno.writeTextFile(
      path,
      JSON.stringify({
        metadata: { name: n },
        image: { image: BUSYBOX_REF },
        // Exits on SIGTERM at once, so stop measures the runtime, not a grace period.
        command: ["sh", "-c", "trap 'exit 0' TERM; sleep 3600 & wait"],
        log_path: `${n}.log`,
        linux: {},
      }),
    );
    return path;
  };
  return { pod, ctr };
}

/** One pod lifecycle on a side; the wall time of each step in ms. */
async function lifecycle(
  bin: string,
  side: CriSide,
  work: string,
  name: string,
): Promise<Record<Step, number>> {
  const c = (args: string[]) => crictl(bin, side.endpoint, args);
  const cfg = await writeConfigs(work, side, name);
  const ctrJson = await cfg.ctr("c");
  const t0 = performance.now();
  const pod = (await c(["runp", cfg.pod])).stdout;
  const t1 = performance.now();
  const ctr = (await c(["create", pod, ctrJson, cfg.pod])).stdout;
  await c(["start", ctr]);
  const t2 = performance.now();
  await c(["stop", "--timeout", "10", ctr]);
  await c(["rm", ctr]);
  const t3 = performance.now();
  await c(["stopp", pod]);
  await c(["rmp", pod]);
  const t4 = performance.now();
  return { runp: t1 - t0, "create+start": t2 - t1, "stop+rm": t3 - t2, "stopp+rmp": t4 - t3 };
}

/**
 * PSS (KiB) of the side's daemon and of the shims serving `pods` pods of 2
 * running containers each (shims found as the parents of the containers'
 * processes in the side's cgroup parent, plus berth's idle warm spare).
 */
async function podsMemory(
  bin: string,
  side: CriSide,
  work: string,
  pods: number,
): Promise<{ daemon: number; shims: number; shimCount: number }> {
  const c = (args: string[]) => crictl(bin, side.endpoint, args);
  try {
    for (let k = 0; k < pods; k++) {
      const cfg = await writeConfigs(work, side, `mem-${side.name}-${k}`);
      const pod = (await c(["runp", cfg.pod])).stdout;
      for (const n of ["a", "b"]) {
        const ctr = (await c(["create", pod, await cfg.ctr(n), cfg.pod])).stdout;
        await c(["start", ctr]);
      }
    }
    const running = (await c(["ps", "-q", "--state", "running"])).stdout.split("\n")
      .filter(Boolean);
    if (running.length !== pods * 2) {
      throw new Error(`expected ${pods * 2} running containers, crictl ps shows ${running.length}`);
    }
    await new Promise((r) => setTimeout(r, 500)); // let start-up garbage settle
    const inPods = processesInCgroup(`${side.cgroupParent}/`);
    const shims = [
      ...new Set(
        inPods.map(parentOf).filter((p): p is number => p !== null && p > 1 && !inPods.includes(p)),
      ),
    ];
    const spares = findProcesses((pid, argv) =>
      argv.some((a) => a.includes(side.dir) && a.endsWith("/spare")) &&
      childrenOf(pid).length === 0
    ).filter((p) => !shims.includes(p));
    let shimPss = 0;
    for (const pid of [...shims, ...spares]) shimPss += pssKiB(pid) ?? 0;
    const daemon = pssKiB(side.daemonPid);
    if (daemon === null) throw new Error(`${side.name} daemon is gone`);
    return { daemon, shims: shimPss, shimCount: shims.length };
  } finally {
    await crictl(bin, side.endpoint, ["rmp", "-fa"]).catch((err) =>
      console.error(`cri memory clean-up (${side.name}): ${err.message}`)
    );
  }
}

const MIB = 1024;

/** Workload 9: the CRI lifecycle and pod memory, berth's plugin against containerd's. */
export const cri: Workload = {
  id: 9,
  name: "CRI (crictl)",
  async run(ctx: BenchContext) {
    const rounds = ctx.params.criRounds, pods = ctx.params.criPods;
    const labels = {
      berthLabel: "crictl -> berth CRI",
      containerdLabel: "crictl -> containerd CRI",
    };
    const figures = (sides: Record<string, Record<string, Side>>): Figure[] => [
      ...STEPS.map((s) =>
        figure({
          workload: `9. CRI \`${s}\``,
          metric: "wall time",
          unit: "ms",
          better: "lower",
          ...labels,
          berth: sides.berth[s],
          containerd: sides.containerd[s],
          target: { op: "<=", value: 1.0 },
          note: "one or two crictl processes per step, the same on both sides",
        })
      ),
      figure({
        workload: `9. CRI memory, ${pods} pods x 2 containers`,
        metric: "daemon + shims PSS",
        unit: "MiB",
        better: "lower",
        ...labels,
        berth: sides.berth.memory,
        containerd: sides.containerd.memory,
        target: { op: "<=", value: 1.0 },
      }),
    ];
    const allNa = (why: string): Record<string, Side> =>
      Object.fromEntries([...STEPS, "memory"].map((k) => [k, notMeasured(why)]));

    const bin = findCrictl(ctx.repoRoot);
    if (bin === undefined) {
      const na = allNa("crictl not found (shared/tools/crictl, $CRICTL or PATH)");
      return figures({ berth: na, containerd: na });
    }
    ctx.progress("9. CRI: building the pause image, starting both CRI daemons");
    const pause = await buildPauseImage(ctx.tmp);
    const images = [pause.archive, ctx.busybox.archive];
    const work = await Deno.makeTempDir({ dir: ctx.tmp, prefix: "cri-" });
    const sides: CriSide[] = [];
    const result: Record<string, Record<string, Side>> = {};
    const starts: [CriSide["name"], () => Promise<CriSide>][] = [
      ["containerd", () => startContainerdSide(images)],
      ["berth", () => startBerthSide(ctx, images)],
    ];
    for (const [name, start] of starts) {
      const blocked = name === "berth" ? berthBlocked(ctx) : null;
      if (blocked !== null) {
        result[name] = allNa(blocked);
        continue;
      }
      try {
        const side = await start();
        ctx.defer(side.stop);
        await waitReady(bin, side);
        sides.push(side);
      } catch (err) {
        result[name] = allNa(`${name} CRI: ${(err as Error).message}`);
      }
    }

    // Lifecycle rounds, interleaved: the order alternates each round; one warm-up round.
    const samples = new Map(
      sides.map((s) => [s.name, new Map(STEPS.map((k) => [k, [] as number[]]))]),
    );
    const failed = new Map<string, string>();
    for (let i = -1; i < rounds; i++) {
      ctx.progress(`9. CRI lifecycle round ${i + 2}/${rounds + 1}`);
      const order = i % 2 === 0 ? sides : [...sides].reverse();
      for (const side of order) {
        if (failed.has(side.name)) continue;
        try {
          const t = await lifecycle(bin, side, work, `life-${side.name}-${i + 1}`);
          if (i < 0) continue;
          for (const k of STEPS) samples.get(side.name)!.get(k)!.push(t[k]);
        } catch (err) {
          failed.set(side.name, (err as Error).message);
          ctx.progress(`  ${side.name}: n/a (${(err as Error).message})`);
        }
      }
    }
    // Memory: one side at a time, so neither's pods share the machine with the other's.
    const memory = new Map<string, number[]>();
    for (const side of sides) {
      if (failed.has(side.name)) continue;
      ctx.progress(`9. CRI memory: ${pods} pods x 2 containers on ${side.name}`);
      try {
        const m = await podsMemory(bin, side, work, pods);
        ctx.progress(
          `  ${side.name}: daemon ${(m.daemon / MIB).toFixed(1)} MiB + ${m.shimCount} shims ${
            (m.shims / MIB).toFixed(1)
          } MiB PSS`,
        );
        memory.set(side.name, [(m.daemon + m.shims) / MIB]);
      } catch (err) {
        memory.set(side.name, []);
        result[side.name] = { memory: notMeasured((err as Error).message) };
      }
    }
    for (const side of sides) {
      const why = failed.get(side.name);
      const r: Record<string, Side> = result[side.name] ?? {};
      for (const k of STEPS) {
        r[k] = why !== undefined ? notMeasured(why) : measured(samples.get(side.name)!.get(k)!);
      }
      const mem = memory.get(side.name) ?? [];
      r.memory ??= why !== undefined
        ? notMeasured(why)
        : mem.length > 0
        ? measured(mem)
        : notMeasured("not measured");
      result[side.name] = r;
    }
    for (const side of sides) await side.stop();
    return figures(result);
  },
};
