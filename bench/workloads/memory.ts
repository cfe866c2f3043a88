/**
 * Workload 3: memory. Daemon RSS idle and with N running containers; shim
 * PSS per running container with one container per shim and with
 * `groupSize` containers per shim. containerd groups a runc shim's
 * containers by the OCI annotation io.containerd.runc.v2.group, which
 * Debian's ctr 1.6 sets with `run --annotation`. The berth shim is measured
 * under the same containerd (`--runtime io.containerd.berth.v2`), so only the
 * shim differs.
 * @module
 */

import { type BenchContext, berthBlocked, type Workload } from "../context.ts";
import { figure, measured, notMeasured, type Side } from "../figures.ts";
import type { Engine } from "../engines.ts";
import { killNow, parentOf, pssKiB, rssKiB } from "../../tests/support/proc.ts";
import { idleSpares } from "../engines.ts";
import { BERTH_RUNTIME, berthShimMissing, check } from "./run.ts";

/** The annotation containerd's runc shim manager groups containers by. */
export const GROUP_ANNOTATION = "io.containerd.runc.v2.group";

const KiB_PER_MiB = 1024;

/** What one phase (N containers running on one engine and runtime) measured. */
export interface PhaseResult {
  daemonRssKiB: number;
  daemonPssKiB: number;
  /** PSS of the phase's shims plus any idle warm spare. */
  shimPssKiB: number;
  /** shimPssKiB divided by the containers. */
  shimPssPerContainerKiB: number;
  shims: number;
}

/** How a phase starts its containers and how long they settle before they are measured. */
export interface PhaseOptions {
  /** Containers per shim by group annotation when > 1; 1 leaves the engine's own layout. */
  groupSize: number;
  /** A runtime other than the engine's default (containerd driving berth's shim). */
  runtime?: string;
  /** Check that there are ceil(n / groupSize) shims (false: the engine's layout is its own). */
  checkShims?: boolean;
  /** Wait after the last start before sampling (start-up garbage settles, shims trim). */
  settleMs?: number;
}

/**
 * Removes containers `ids` through the engine's client: each task killed and
 * deleted, then the containers. Some may have no task (a failed start).
 * Bounded: when a delete hangs (a stuck shim), the remaining containers'
 * processes and the shims holding them are SIGKILLed by pid (taken from
 * `tasks ls` for these very ids), and the deletes are tried once more; what
 * still remains is left to the engine's stop().
 */
export async function removeContainers(e: Engine, ids: string[]): Promise<void> {
  const problems: string[] = [];
  const deleteTasks = async (which: string[]) => {
    for (const id of which) {
      const t = await e.client(["tasks", "delete", "-f", id], { timeoutMs: 10_000 });
      if (t.code === -1) return id; // hung
      if (t.code !== 0 && !/not found/.test(t.stderr)) problems.push(t.stderr.trim());
    }
    return null;
  };
  const hung = await deleteTasks(ids);
  if (hung !== null) {
    problems.push(`tasks delete -f ${hung} hung`);
    const rest = ids.slice(ids.indexOf(hung));
    await killStuck(e, rest);
    if (await deleteTasks(rest) !== null) {
      problems.push("tasks delete hung again after the shims were killed");
    }
  }
  for (let i = 0; i < ids.length; i += 25) {
    const c = await e.client(["containers", "delete", ...ids.slice(i, i + 25)], {
      timeoutMs: 30_000,
    });
    if (c.code !== 0) problems.push(c.stderr.trim());
  }
  const ls = check("containers ls -q", await e.client(["containers", "ls", "-q"]));
  const left = ls.stdout.split("\n").filter((id) => ids.includes(id));
  if (left.length > 0) {
    throw new Error(
      `${left.length} containers not removed (left for the end): ${problems.join(" | ")}`,
    );
  }
}

/** SIGKILLs the init processes of containers `ids` and the shims that are their parents. */
async function killStuck(e: Engine, ids: string[]): Promise<void> {
  const ls = await e.client(["tasks", "ls"], { timeoutMs: 30_000 });
  const pids: number[] = [];
  for (const line of ls.stdout.split("\n")) {
    const [id, pid] = line.trim().split(/\s+/);
    if (!ids.includes(id) || !(Number(pid) > 1)) continue;
    pids.push(Number(pid));
    const shim = parentOf(Number(pid));
    if (shim !== null && shim > 1 && shim !== e.daemonPid && shim !== Deno.pid) pids.push(shim);
  }
  if (pids.length > 0) await killNow([...new Set(pids)]);
  await new Promise((r) => setTimeout(r, 500)); // let the daemon see its shims go
}

/**
 * Starts `n` detached `sleep` containers on `e` (grouped `groupSize` to a
 * shim when > 1, on `runtime` when given), measures the daemon's RSS and PSS
 * and the shims' PSS, and removes the containers again.
 */
export async function phase(
  ctx: BenchContext,
  e: Engine,
  tag: string,
  n: number,
  opts: PhaseOptions,
): Promise<PhaseResult> {
  const { groupSize, runtime, checkShims = true, settleMs = 300 } = opts;
  const ids: string[] = [];
  try {
    for (let k = 0; k < n; k++) {
      const id = `${tag}-${k}`;
      const extra = runtime ? ["--runtime", runtime] : [];
      if (groupSize > 1) {
        extra.push("--annotation", `${GROUP_ANNOTATION}=${tag}-g${Math.floor(k / groupSize)}`);
      }
      const r = await e.client(["run", "-d", ...extra, ctx.busybox.ref, id, "sleep", "3600"], {
        timeoutMs: 60_000,
      });
      ids.push(id);
      check(`run -d (${k + 1} of ${n})`, r);
    }
    const tasks = check("tasks ls", await e.client(["tasks", "ls"]));
    const running = tasks.stdout.split("\n").filter((l) =>
      l.startsWith(`${tag}-`) && /\bRUNNING\b/.test(l)
    );
    if (running.length !== n) {
      throw new Error(`expected ${n} running tasks, tasks ls shows ${running.length}`);
    }
    await new Promise((r) => setTimeout(r, settleMs)); // let start-up garbage settle
    const daemonRssKiB = e.daemonPid !== null ? rssKiB(e.daemonPid) : null;
    const daemonPssKiB = e.daemonPid !== null ? pssKiB(e.daemonPid) : null;
    if (daemonRssKiB === null || daemonPssKiB === null) throw new Error("daemon is gone");
    // A container's init process is the child of the shim that serves it,
    // whatever the shim's argv says (a berth shim may be an adopted spare).
    const taskPids = running.map((l) => Number(l.trim().split(/\s+/)[1]));
    const shims = [
      ...new Set(taskPids.map(parentOf).filter((p): p is number => p !== null && p > 1)),
    ];
    if (shims.length === 0) throw new Error("no shim process found for the running containers");
    const expected = Math.ceil(n / groupSize);
    if (checkShims && shims.length !== expected) {
      throw new Error(
        `${shims.length} shim processes for ${n} containers, expected ${expected}` +
          (groupSize > 1 ? ` (grouping by ${GROUP_ANNOTATION} not honoured)` : ""),
      );
    }
    // An idle warm spare exists because shims run: its memory counts too.
    const spares = idleSpares(e.shimSocketDir).filter((p) => !shims.includes(p));
    let pss = 0;
    for (const pid of [...shims, ...spares]) pss += pssKiB(pid) ?? 0;
    return {
      daemonRssKiB,
      daemonPssKiB,
      shimPssKiB: pss,
      shimPssPerContainerKiB: pss / n,
      shims: shims.length,
    };
  } finally {
    if (ids.length > 0) {
      await removeContainers(e, ids).catch((err) =>
        ctx.progress(`  cleanup of ${tag}: ${err.message}`)
      );
    }
  }
}

/** Collects a number per round, or the first failure's reason. */
export class Series {
  values: number[] = [];
  failure: string | null;
  constructor(unavailable: string | null = null) {
    this.failure = unavailable;
  }
  side(): Side {
    if (this.failure !== null) return notMeasured(this.failure);
    if (this.values.length === 0) return notMeasured("not measured");
    return measured(this.values);
  }
}

/** Runs one measurement; its failure marks `series` n/a with the reason. */
export async function attempt(
  series: Series[],
  ctx: BenchContext,
  label: string,
  f: () => Promise<void>,
) {
  if (series.every((s) => s.failure !== null)) return;
  const started = performance.now();
  try {
    await f();
    ctx.progress(`  ${label}: ${((performance.now() - started) / 1000).toFixed(1)} s`);
  } catch (err) {
    const reason = (err as Error).message;
    ctx.progress(`  ${label}: n/a (${notMeasured(reason).na})`);
    for (const s of series) s.failure ??= reason;
  }
}

/** Workload 3: daemon RSS and shim PSS. */
export const memory: Workload = {
  id: 3,
  name: "memory",
  async run(ctx) {
    const { memN: n, memRounds: rounds, groupSize } = ctx.params;
    const mib = (kib: number) => kib / KiB_PER_MiB;

    const idle = {
      containerd: ctx.idleRss.containerd.length > 0
        ? measured(ctx.idleRss.containerd.map(mib))
        : notMeasured("no sample"),
      berth: ctx.berth.unavailable !== null
        ? notMeasured(ctx.berth.unavailable)
        : ctx.idleRss.berth.length > 0
        ? measured(ctx.idleRss.berth.map(mib))
        : notMeasured("no sample"),
    };

    const shimBlocked = berthShimMissing(ctx);
    const ctdRss = new Series(), berthRss = new Series(berthBlocked(ctx));
    const ctdPss1 = new Series(), ctdPssG = new Series();
    const berthPss1 = new Series(shimBlocked), berthPssG = new Series(shimBlocked);

    for (let i = 0; i < rounds; i++) {
      ctx.progress(`3. memory round ${i + 1}/${rounds}: ${n} running containers per phase`);
      const phases: Array<() => Promise<void>> = [
        () =>
          attempt([ctdRss, ctdPss1], ctx, "containerd, 1 per shim", async () => {
            const p = await phase(ctx, ctx.containerd, `w3c1r${i}`, n, { groupSize: 1 });
            ctdRss.values.push(mib(p.daemonRssKiB));
            ctdPss1.values.push(mib(p.shimPssPerContainerKiB));
          }),
        () =>
          attempt([ctdPssG], ctx, `containerd, ${groupSize} per shim`, async () => {
            const p = await phase(ctx, ctx.containerd, `w3cgr${i}`, n, { groupSize });
            ctdPssG.values.push(mib(p.shimPssPerContainerKiB));
          }),
        () =>
          attempt([berthPss1], ctx, "berth shim, 1 per shim", async () => {
            const p = await phase(ctx, ctx.containerd, `w3s1r${i}`, n, {
              groupSize: 1,
              runtime: BERTH_RUNTIME,
            });
            berthPss1.values.push(mib(p.shimPssPerContainerKiB));
          }),
        () =>
          attempt([berthPssG], ctx, `berth shim, ${groupSize} per shim`, async () => {
            const p = await phase(ctx, ctx.containerd, `w3sgr${i}`, n, {
              groupSize,
              runtime: BERTH_RUNTIME,
            });
            berthPssG.values.push(mib(p.shimPssPerContainerKiB));
          }),
        () =>
          attempt([berthRss], ctx, "berth daemon", async () => {
            // The daemon's RSS is what counts here; its shim layout is its own business.
            const p = await phase(ctx, ctx.berth, `w3b1r${i}`, n, {
              groupSize: 1,
              checkShims: false,
            });
            berthRss.values.push(mib(p.daemonRssKiB));
          }),
      ];
      for (const p of i % 2 === 0 ? phases : [...phases].reverse()) await p();
    }

    const common = { unit: "MiB", better: "lower" as const };
    return [
      figure({
        ...common,
        workload: "3a. daemon RSS, idle",
        metric: "RSS",
        berthLabel: "berth daemon",
        containerdLabel: "containerd",
        berth: idle.berth,
        containerd: idle.containerd,
        target: { op: "<=", value: 1.25 },
      }),
      figure({
        ...common,
        workload: `3b. daemon RSS, ${n} running`,
        metric: "RSS",
        berthLabel: "berth daemon",
        containerdLabel: "containerd",
        berth: berthRss.side(),
        containerd: ctdRss.side(),
        target: { op: "<=", value: 1.0 },
      }),
      figure({
        ...common,
        workload: "3c. shim PSS per container, 1 per shim",
        metric: "PSS",
        berthLabel: "containerd-shim-berth-v2",
        containerdLabel: "containerd-shim-runc-v2",
        berth: berthPss1.side(),
        containerd: ctdPss1.side(),
        note: "both shims under the same containerd",
      }),
      figure({
        ...common,
        workload: `3d. shim PSS per container, ${groupSize} per shim`,
        metric: "PSS",
        berthLabel: "containerd-shim-berth-v2",
        containerdLabel: "containerd-shim-runc-v2",
        berth: berthPssG.side(),
        containerd: ctdPssG.side(),
        target: { op: "<=", value: 1.0 },
        note: `grouped by --annotation ${GROUP_ANNOTATION}`,
      }),
    ];
  },
};
