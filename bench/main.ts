/**
 * berth against containerd, side by side in one run (`make bench`,
 * `deno task bench`). Starts Debian's containerd and, when it exists,
 * berth daemon, each on its own temporary paths; imports the same images
 * into both; runs every workload on both in interleaved rounds; stops
 * everything it started and checks nothing is left. Writes a Markdown
 * table to stdout and latest.json, latest.svg and latest.md to the output
 * directory (bench/results unless --out).
 *
 * Usage: deno run -A bench/main.ts [--quick] [--out DIR] [--only 1,3,5]
 * @module
 */

import { buildBusyboxImage, BUSYBOX_REF } from "../tests/support/image.ts";
import { mountsUnder } from "../tests/support/mounts.ts";
import {
  processesInCgroup,
  processesMentioning,
  rssKiB,
  terminate,
} from "../tests/support/proc.ts";
import { runTool } from "../tests/support/tool.ts";
import { type BenchContext, FULL, QUICK, type Workload } from "./context.ts";
import {
  berthBinary,
  type Engine,
  snapshotBerth,
  startBerthEngine,
  startContainerdEngine,
} from "./engines.ts";
import { type Figure, figure, notMeasured } from "./figures.ts";
import { jsonReport, markdownTable, type RunInfo, svgChart } from "./report.ts";
import { prepareRuncFloor } from "./runc_floor.ts";
import { runParallel, runSequential } from "./workloads/run.ts";
import { memory } from "./workloads/memory.ts";
import { nodeMemory } from "./workloads/node.ts";
import { ttrpc } from "./workloads/ttrpc.ts";
import { images } from "./workloads/images.ts";
import { api } from "./workloads/api.ts";
import { startup } from "./workloads/startup.ts";
import { cri } from "./workloads/cri.ts";
import { existsSync } from "../src/fsutil/mod.ts";

/** Where containerd's and berth's shims keep runc state, per namespace. */
const RUN_DIRS = ["/run/containerd", "/run/berth"];

/** Every workload, in report order. */
export const WORKLOADS: Workload[] = [
  runSequential,
  runParallel,
  memory,
  ttrpc,
  images,
  api,
  startup,
  nodeMemory,
  cri,
];

/** Parsed command line. */
export interface BenchArgs {
  quick: boolean;
  out: string;
  only: number[] | null;
}

const USAGE = "usage: bench/main.ts [--quick] [--out DIR] [--only 1,3,5]";

/** Parses argv; throws with the usage on anything unknown. */
export function parseBenchArgs(argv: string[], defaultOut: string): BenchArgs {
  const a: BenchArgs = { quick: false, out: defaultOut, only: null };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const [flag, inline] = arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg];
    const value = () => {
      const v = inline ?? argv[++i];
      if (v === undefined || v === "") throw new Error(`${flag} needs a value\n${USAGE}`);
      return v;
    };
    if (flag === "--quick") a.quick = true;
    else if (flag === "--out") a.out = value();
    else if (flag === "--only") {
      const ids = value().split(",").map((s) => Number(s.trim()));
      const known = new Set(WORKLOADS.map((w) => w.id));
      const bad = ids.filter((id) => !known.has(id));
      if (bad.length > 0) {
        throw new Error(
          `--only: unknown workload ${bad.join(", ")} (1-${WORKLOADS.length})\n${USAGE}`,
        );
      }
      a.only = ids;
    } else throw new Error(`unknown argument ${arg}\n${USAGE}`);
  }
  return a;
}

async function firstLine(cmd: string, args: string[]): Promise<string> {
  const r = await runTool(cmd, args, { timeoutMs: 10_000 });
  return r.code === 0 ? r.stdout.trim().split("\n")[0] : "n/a";
}

async function runInfo(quick: boolean, binDir: string): Promise<RunInfo> {
  const meminfo = await Deno.readTextFile("/proc/meminfo").catch(() => "");
  const memKiB = Number(meminfo.match(/^MemTotal:\s+(\d+)/m)?.[1] ?? 0);
  const cpuinfo = await Deno.readTextFile("/proc/cpuinfo").catch(() => "");
  const cpu = cpuinfo.match(/^model name\s*:\s*(.+)$/m)?.[1]?.trim() ?? "unknown cpu";
  return {
    date: new Date().toISOString(),
    mode: quick ? "quick" : "full",
    machine: {
      cores: navigator.hardwareConcurrency,
      memoryGiB: Math.round(memKiB / 1048576),
      kernel: Deno.osRelease(),
      cpu,
    },
    versions: {
      containerd: (await firstLine("containerd", ["--version"])).split(" ")[2] ?? "n/a",
      runc: (await firstLine("runc", ["--version"])).replace(/^runc version /, ""),
      berth: await firstLine(berthBinary(binDir), ["--version"]),
      deno: Deno.version.deno,
    },
  };
}

async function sampleRss(pid: number | null, n = 5): Promise<number[]> {
  const out: number[] = [];
  if (pid === null) return out;
  for (let i = 0; i < n; i++) {
    const v = rssKiB(pid);
    if (v !== null) out.push(v);
    await new Promise((r) => setTimeout(r, 100));
  }
  return out;
}

/** Runs the benchmark; returns the process exit status. */
export async function benchMain(argv: string[]): Promise<number> {
  const repoRoot = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");
  let args: BenchArgs;
  try {
    args = parseBenchArgs(argv, `${repoRoot}/bench/results`);
  } catch (err) {
    console.error((err as Error).message);
    return 2;
  }
  const t0 = performance.now();
  const progress = (msg: string) =>
    console.error(`[bench ${((performance.now() - t0) / 1000).toFixed(1).padStart(6)}s] ${msg}`);
  const params = args.quick ? QUICK : FULL;

  // Everything started is stopped from here, in reverse order, however the run ends.
  const stops: Array<() => Promise<void>> = [];
  const dirs: string[] = [];
  const namespaces: string[] = [];
  const defer = (stop: () => Promise<void>, dir?: string) => {
    stops.push(stop);
    if (dir) dirs.push(dir);
  };
  let cleaning: Promise<void> | null = null;
  const cleanup = () => {
    cleaning ??= (async () => {
      for (const stop of stops.reverse()) {
        await stop().catch((err) => progress(`clean-up step failed: ${(err as Error).message}`));
      }
    })();
    return cleaning;
  };
  const onSignal = () => {
    progress("interrupted: stopping everything started");
    cleanup().finally(() => Deno.exit(130));
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);

  const figures: Figure[] = [];
  const errors: string[] = [];
  let binDir = "";
  let info: RunInfo | null = null;
  const durations: Record<string, number> = {};
  try {
    const tmp = await Deno.makeTempDir({ prefix: "berth-bench-" });
    defer(async () => {
      // Last: whatever still runs from this run's copy of berth or its shim
      // socket dirs (a warm spare outlives the shims that started it for a while).
      await terminate(processesMentioning(tmp), 2000);
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
    }, tmp);
    const snap = await snapshotBerth(repoRoot, tmp);
    binDir = snap.binDir;
    if (snap.missing) progress(`berth: ${snap.missing}`);
    info = await runInfo(args.quick, binDir);

    progress(`${info.mode} run; building the busybox image`);
    const busybox = await buildBusyboxImage(tmp);

    progress("starting containerd");
    // berth's shims keep their sockets (and warm spare) in dirs private to this run.
    const containerd = await startContainerdEngine([binDir], `${tmp}/cs`, `${binDir}/containerd`);
    defer(containerd.stop, containerd.dir);
    namespaces.push(containerd.namespace);
    progress("starting berth daemon");
    const berth: Engine = await startBerthEngine(binDir);
    defer(berth.stop, berth.dir);
    namespaces.push(berth.namespace);
    if (berth.unavailable) progress(`berth daemon: n/a (${berth.unavailable})`);

    const runc = await prepareRuncFloor();
    defer(runc.stop, runc.dir);

    const imp = await containerd.client(["images", "import", busybox.archive]);
    if (imp.code !== 0) throw new Error(`containerd: images import: ${imp.stderr.trim()}`);
    let berthCannotRun: string | null = null;
    if (!berth.unavailable) {
      const r = await berth.client(["images", "import", busybox.archive]);
      if (r.code !== 0) {
        berthCannotRun = `berth images import of ${BUSYBOX_REF} failed: ${
          r.stderr.trim() || r.stdout.trim()
        }`;
      }
    }
    await new Promise((r) => setTimeout(r, 500));
    const idleRss = {
      containerd: await sampleRss(containerd.daemonPid),
      berth: await sampleRss(berth.daemonPid),
    };
    // One probe decides whether berth can run containers at all, so a berth
    // that cannot costs one failure here instead of one in every workload.
    if (!berth.unavailable && berthCannotRun === null) {
      const r = await berth.client(["run", "--rm", busybox.ref, "probe-run", "true"], {
        timeoutMs: 60_000,
      });
      if (r.code !== 0) {
        berthCannotRun = `berth run --rm failed: ${r.stderr.trim() || r.stdout.trim()}`;
      }
    }
    if (berthCannotRun !== null) progress(`berth: ${notMeasured(berthCannotRun).na}`);

    const ctx: BenchContext = {
      params,
      quick: args.quick,
      repoRoot,
      binDir,
      tmp,
      containerd,
      berth,
      runc,
      busybox,
      berthCannotRun,
      idleRss,
      progress,
      defer,
    };

    for (const w of WORKLOADS) {
      if (args.only && !args.only.includes(w.id)) continue;
      const started = performance.now();
      try {
        figures.push(...await w.run(ctx));
      } catch (err) {
        const msg = `workload ${w.id} (${w.name}): ${(err as Error).stack ?? err}`;
        errors.push(msg);
        progress(`harness error in ${msg}`);
        figures.push(figure({
          workload: `${w.id}. ${w.name}`,
          metric: "",
          unit: "",
          better: "lower",
          berthLabel: "berth",
          containerdLabel: "containerd",
          berth: notMeasured(`harness error: ${(err as Error).message}`),
          containerd: notMeasured(`harness error: ${(err as Error).message}`),
        }));
      }
      durations[`${w.id}`] = Math.round(performance.now() - started);
    }
  } catch (err) {
    errors.push(`set-up: ${(err as Error).stack ?? err}`);
    progress(`set-up failed: ${(err as Error).message}`);
  } finally {
    progress("stopping everything started");
    await cleanup();
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }

  // Nothing of this run may remain: no directory, no process naming one or
  // in a namespace's cgroup (a container), no mount, no runc state.
  const leftover = {
    dirs: dirs.filter((p) => existsSync(p)),
    processes: [
      ...dirs.flatMap((d) => processesMentioning(d)),
      ...namespaces.flatMap((ns) => processesInCgroup(`/${ns}/`)),
    ],
    mounts: dirs.flatMap((d) => mountsUnder(d)),
    runcState: namespaces.flatMap((ns) => RUN_DIRS.map((r) => `${r}/runc/${ns}`)).filter((p) =>
      existsSync(p)
    ),
  };
  const clean = Object.values(leftover).every((l) => l.length === 0);
  if (!clean) errors.push(`left behind: ${JSON.stringify(leftover)}`);

  const totalMs = Math.round(performance.now() - t0);
  info ??= await runInfo(args.quick, binDir);
  const table = markdownTable(figures, info);
  console.log(table);
  await Deno.mkdir(args.out, { recursive: true });
  await Deno.writeTextFile(
    `${args.out}/latest.json`,
    jsonReport(figures, info, {
      params,
      durationsMs: { ...durations, total: totalMs },
      cleanup: { dirs, namespaces, clean, leftover },
      errors,
    }),
  );
  await Deno.writeTextFile(`${args.out}/latest.svg`, svgChart(figures, info));
  await Deno.writeTextFile(`${args.out}/latest.md`, table + "\n");
  progress(`wrote ${args.out}/latest.{json,svg,md} in ${(totalMs / 1000).toFixed(1)} s`);
  if (errors.length > 0) {
    for (const e of errors) console.error(`error: ${e}`);
    return 1;
  }
  return 0;
}

if (import.meta.main) {
  Deno.exit(await benchMain(Deno.args));
}
