/**
 * Workload 8: what a node pays in memory. With N sleeping containers, the
 * PSS (smaps_rollup) of the daemon plus every shim, each system started its
 * own default way: berth's client against berth's daemon (shims shared up to
 * its shim_group_size), ctr against containerd (one runc shim per
 * container). And containerd driving berth's shim with one group annotation
 * for `groupSize` containers, against as many runc shims (containerd's
 * default), shims only: there berth's shim is the only Deno process.
 *
 * PSS divides a shared page among the processes that map it, so the run's
 * binaries are private copies (see snapshotBerth): other Deno or containerd
 * processes on the machine take no share of this run's pages.
 * @module
 */

import type { Workload } from "../context.ts";
import { berthBlocked } from "../context.ts";
import { figure, type Target } from "../figures.ts";
import { attempt, phase, Series } from "./memory.ts";
import { BERTH_RUNTIME, berthShimMissing } from "./run.ts";

const KiB_PER_MiB = 1024;

/** Targets of issue 15 for the node total, by container count (none for others). */
const NODE_TARGETS: Record<number, Target> = {
  10: { op: "<=", value: 1.0 },
  50: { op: "<=", value: 0.5 },
};

/** Wait after the last start: a node's containers sit for hours, so the steady state counts. */
const SETTLE_MS = 2000;

/** Workload 8: node total PSS with N containers; berth's shim grouped under containerd. */
export const nodeMemory: Workload = {
  id: 8,
  name: "node memory",
  async run(ctx) {
    const { nodeNs, memRounds: rounds, groupSize } = ctx.params;
    const mib = (kib: number) => kib / KiB_PER_MiB;
    const blocked = berthBlocked(ctx);
    const berthTotal = nodeNs.map(() => new Series(blocked));
    const ctdTotal = nodeNs.map(() => new Series());
    const berthShims = new Series(berthShimMissing(ctx)), ctdShims = new Series();

    for (let i = 0; i < rounds; i++) {
      ctx.progress(`8. node memory round ${i + 1}/${rounds}: N = ${nodeNs.join(", ")}`);
      const phases: Array<() => Promise<void>> = [];
      nodeNs.forEach((n, k) => {
        phases.push(() =>
          attempt([ctdTotal[k]], ctx, `containerd, ${n} containers`, async () => {
            const p = await phase(ctx, ctx.containerd, `w8c${n}r${i}`, n, {
              groupSize: 1,
              settleMs: SETTLE_MS,
            });
            ctdTotal[k].values.push(mib(p.daemonPssKiB + p.shimPssKiB));
          })
        );
        phases.push(() =>
          attempt([berthTotal[k]], ctx, `berth, ${n} containers`, async () => {
            // berth's default layout (shared shims) is what is measured.
            const p = await phase(ctx, ctx.berth, `w8b${n}r${i}`, n, {
              groupSize: 1,
              checkShims: false,
              settleMs: SETTLE_MS,
            });
            berthTotal[k].values.push(mib(p.daemonPssKiB + p.shimPssKiB));
          })
        );
      });
      phases.push(() =>
        attempt([ctdShims], ctx, `containerd, ${groupSize} runc shims`, async () => {
          const p = await phase(ctx, ctx.containerd, `w8r${i}`, groupSize, {
            groupSize: 1,
            settleMs: SETTLE_MS,
          });
          ctdShims.values.push(mib(p.shimPssKiB));
        })
      );
      phases.push(() =>
        attempt([berthShims], ctx, `containerd, 1 berth shim of ${groupSize}`, async () => {
          const p = await phase(ctx, ctx.containerd, `w8s${i}`, groupSize, {
            groupSize,
            runtime: BERTH_RUNTIME,
            settleMs: SETTLE_MS,
          });
          berthShims.values.push(mib(p.shimPssKiB));
        })
      );
      for (const p of i % 2 === 0 ? phases : [...phases].reverse()) await p();
    }

    const common = { unit: "MiB", better: "lower" as const, metric: "PSS" };
    return [
      ...nodeNs.map((n, k) =>
        figure({
          ...common,
          workload: `8a. node total, ${n} running`,
          berthLabel: "berth daemon + shims",
          containerdLabel: "containerd + runc shims",
          berth: berthTotal[k].side(),
          containerd: ctdTotal[k].side(),
          target: NODE_TARGETS[n],
          note: "each started its default way (berth client; ctr)",
        })
      ),
      figure({
        ...common,
        workload: `8b. ${groupSize} containers: 1 berth shim vs ${groupSize} runc shims`,
        berthLabel: "containerd-shim-berth-v2, one group",
        containerdLabel: "containerd-shim-runc-v2, one per container",
        berth: berthShims.side(),
        containerd: ctdShims.side(),
        target: { op: "<=", value: 1.0 },
        note: "shims only, both under the same containerd",
      }),
    ];
  },
};
