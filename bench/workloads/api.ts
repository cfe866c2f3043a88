/**
 * Workload 6: containerd's gRPC API served by berth daemon. Unary round
 * trips per second (Version; Containers.Get of an existing container) with
 * one bench client for both daemons, and Debian's ctr running
 * `run --rm IMG id true` against berth versus against containerd.
 * @module
 */

import { type BenchContext, berthBlocked, type Workload } from "../context.ts";
import { type Figure, figure } from "../figures.ts";
import { interleave } from "../interleave.ts";
import type { Engine } from "../engines.ts";
import { containersGetCall, unaryRate, versionCall } from "../grpc.ts";
import { check } from "./run.ts";

const GET_ID = "w6-get-target";

/**
 * Why ctr cannot reach the engine over gRPC, or null: without a socket ctr
 * would only wait out its dial timeout, so say so at once.
 */
function noGrpcSocket(e: Engine): string | null {
  try {
    if (Deno.lstatSync(e.address).isSocket) return null;
  } catch { /* missing */ }
  return `no gRPC socket at ${e.address}`;
}

/** Creates the container Containers.Get asks for, through ctr on the engine's gRPC socket. */
async function createGetTarget(ctx: BenchContext, e: Engine): Promise<string | null> {
  try {
    check(
      "containers create",
      await e.ctr(["containers", "create", ctx.busybox.ref, GET_ID, "true"]),
    );
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Workload 6: gRPC throughput and ctr against berth. */
export const api: Workload = {
  id: 6,
  name: "gRPC API",
  async run(ctx: BenchContext) {
    const { rpcDurationMs: ms, rpcRounds: rounds, runN } = ctx.params;
    const figures: Figure[] = [];

    const ctdGet = await createGetTarget(ctx, ctx.containerd);
    if (ctdGet !== null) throw new Error(`containerd: ${ctdGet}`);
    const berthGrpc = ctx.berth.unavailable ?? noGrpcSocket(ctx.berth);
    const berthGet = berthGrpc ?? ctx.berthCannotRun ?? await createGetTarget(ctx, ctx.berth);

    const methods = [
      { name: "Version", call: versionCall(), berthBlocked: berthGrpc },
      { name: "Containers.Get", call: containersGetCall(GET_ID), berthBlocked: berthGet },
    ];
    for (const m of methods) {
      for (const inflight of [1, 32]) {
        ctx.progress(`6. gRPC ${m.name}, ${inflight} in flight, ${rounds} x ${ms} ms`);
        const sides = await interleave(rounds, [
          {
            name: "berth",
            unavailable: m.berthBlocked,
            once: () => unaryRate(ctx.berth.address, ctx.berth.namespace, m.call, inflight, ms),
          },
          {
            name: "containerd",
            once: () =>
              unaryRate(ctx.containerd.address, ctx.containerd.namespace, m.call, inflight, ms),
          },
        ], ctx.progress);
        figures.push(figure({
          workload: `6. gRPC ${m.name}, ${inflight} in flight`,
          metric: "throughput",
          unit: "calls/s",
          better: "higher",
          berthLabel: "berth daemon",
          containerdLabel: "containerd",
          berth: sides.berth,
          containerd: sides.containerd,
          target: { op: ">=", value: 1.0 },
          note: "same node:http2 client for both",
        }));
      }
    }

    await ctx.containerd.ctr(["containers", "delete", GET_ID]);
    if (berthGet === null) await ctx.berth.ctr(["containers", "delete", GET_ID]);

    ctx.progress(`6b. ctr run --rm x${runN}: against berth vs against containerd`);
    const runSides = await interleave(
      runN,
      [
        {
          name: "berth",
          unavailable: berthGrpc ?? berthBlocked(ctx),
          once: async (i) =>
            check(
              "ctr run --rm against berth",
              await ctx.berth.ctr(["run", "--rm", ctx.busybox.ref, `w6-b${i}`, "true"], {
                timeoutMs: 60_000,
              }),
            ).ms,
        },
        {
          name: "containerd",
          once: async (i) =>
            check(
              "ctr run --rm",
              await ctx.containerd.ctr(["run", "--rm", ctx.busybox.ref, `w6-c${i}`, "true"]),
            ).ms,
        },
      ],
      ctx.progress,
      { warmup: 1 },
    );
    figures.push(figure({
      workload: "6b. ctr run --rm",
      metric: "latency",
      unit: "ms",
      better: "lower",
      berthLabel: "ctr -> berth daemon",
      containerdLabel: "ctr -> containerd",
      berth: runSides.berth,
      containerd: runSides.containerd,
      target: { op: "<=", value: 1.0 },
    }));
    return figures;
  },
};
