/**
 * Workloads 1 and 2: `run --rm IMG id true` end to end, one after another
 * (latency) and many at once (wall time of the batch).
 * @module
 */

import { type BenchContext, berthBlocked, type Workload } from "../context.ts";
import { type Figure, figure } from "../figures.ts";
import { interleave } from "../interleave.ts";
import type { Engine } from "../engines.ts";
import type { ToolResult } from "../../tests/support/tool.ts";

/** The runtime name containerd maps to containerd-shim-berth-v2. */
export const BERTH_RUNTIME = "io.containerd.berth.v2";

/** Turns a failed client run into an error carrying the client's own words. */
export function check(what: string, r: ToolResult): ToolResult {
  if (r.code !== 0) {
    const why = r.stderr.trim() || r.stdout.trim() || `exit status ${r.code}`;
    throw new Error(`${what}: ${why}`);
  }
  return r;
}

/** One `run --rm IMG id true` through `client`; its wall time in ms. */
async function runRm(
  client: Engine["client"],
  image: string,
  id: string,
  extra: string[] = [],
  timeoutMs = 60_000,
): Promise<number> {
  const r = await client(["run", "--rm", ...extra, image, id, "true"], { timeoutMs });
  return check("run --rm", r).ms;
}

/** Why containerd cannot run berth's shim now, or null when the binary is there. */
export function berthShimMissing(ctx: BenchContext): string | null {
  try {
    Deno.statSync(`${ctx.binDir}/containerd-shim-berth-v2`);
    return null;
  } catch {
    return "bin/containerd-shim-berth-v2 is not built (make build)";
  }
}

/** Workload 1: sequential run --rm latency (and the berth shim under containerd). */
export const runSequential: Workload = {
  id: 1,
  name: "run --rm IMG id true, sequential",
  async run(ctx) {
    const img = ctx.busybox.ref;
    const n = ctx.params.runN;
    ctx.progress(`1. run --rm x${n}: berth, containerd, runc (interleaved)`);
    const sides = await interleave(
      n,
      [
        {
          name: "berth",
          unavailable: berthBlocked(ctx),
          once: (i) => runRm(ctx.berth.client, img, `w1-b${i}`),
        },
        { name: "containerd", once: (i) => runRm(ctx.containerd.client, img, `w1-c${i}`) },
        { name: "runc", once: (i) => ctx.runc.runOnce(`w1-r${i}`) },
      ],
      ctx.progress,
      { warmup: 1 },
    );
    const figures: Figure[] = [figure({
      workload: "1. run --rm, sequential",
      metric: "latency",
      unit: "ms",
      better: "lower",
      berthLabel: "berth client+daemon+shim",
      containerdLabel: "ctr+containerd+runc shim",
      berth: sides.berth,
      containerd: sides.containerd,
      runc: sides.runc,
      target: { op: "<=", value: 0.75 },
    })];

    ctx.progress(`1b. run --rm x${n} under containerd: berth shim vs runc shim`);
    const shim = await interleave(
      n,
      [
        {
          name: "berth",
          unavailable: berthShimMissing(ctx),
          once: (i) => runRm(ctx.containerd.client, img, `w1b-b${i}`, ["--runtime", BERTH_RUNTIME]),
        },
        { name: "containerd", once: (i) => runRm(ctx.containerd.client, img, `w1b-c${i}`) },
      ],
      ctx.progress,
      { warmup: 1 },
    );
    figures.push(figure({
      workload: "1b. run --rm, shim only",
      metric: "latency",
      unit: "ms",
      better: "lower",
      berthLabel: "ctr+containerd+berth shim",
      containerdLabel: "ctr+containerd+runc shim",
      berth: shim.berth,
      containerd: shim.containerd,
      target: { op: "<=", value: 1.0 },
      note: "same containerd; only the shim differs",
    }));
    return figures;
  },
};

/** Starts `n` run --rm at once and waits for all; wall ms of the batch. */
async function parallelBatch(
  client: Engine["client"],
  image: string,
  tag: string,
  n: number,
): Promise<number> {
  const started = performance.now();
  const results = await Promise.allSettled(
    // Many at once on two cores are slow each: allow minutes, so a slow side gets a number.
    Array.from({ length: n }, (_, k) => runRm(client, image, `${tag}-${k}`, [], 300_000)),
  );
  const ms = performance.now() - started;
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
  if (failed.length > 0) {
    throw new Error(
      `${failed.length} of ${n} failed; first: ${
        String(failed[0].reason?.message ?? failed[0].reason)
      }`,
    );
  }
  return ms;
}

/** Workload 2: a batch of containers started in parallel, all exit, all deleted. */
export const runParallel: Workload = {
  id: 2,
  name: "run --rm in parallel",
  async run(ctx) {
    const img = ctx.busybox.ref;
    const { parallelN: n, parallelRounds: rounds } = ctx.params;
    ctx.progress(`2. ${n} x run --rm in parallel, ${rounds} rounds`);
    const sides = await interleave(rounds, [
      {
        name: "berth",
        unavailable: berthBlocked(ctx),
        once: (i) => parallelBatch(ctx.berth.client, img, `w2-b${i}`, n),
      },
      { name: "containerd", once: (i) => parallelBatch(ctx.containerd.client, img, `w2-c${i}`, n) },
    ], ctx.progress);
    return [figure({
      workload: `2. ${n} in parallel`,
      metric: "wall time",
      unit: "ms",
      better: "lower",
      berthLabel: "berth",
      containerdLabel: "ctr+containerd",
      berth: sides.berth,
      containerd: sides.containerd,
      target: { op: "<=", value: 1.0 },
    })];
  },
};
