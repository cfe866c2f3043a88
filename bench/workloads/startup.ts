/**
 * Workload 7: client start-up, which every command pays. `version` and
 * `tasks ls` each ask the daemon once; `--version` asks nothing, so it is
 * start-up alone and needs only the built binary.
 * @module
 */

import type { BenchContext, Workload } from "../context.ts";
import { type Figure, figure } from "../figures.ts";
import { interleave } from "../interleave.ts";
import { berthBinary } from "../engines.ts";
import { runTool } from "../../tests/support/tool.ts";
import { check } from "./run.ts";

function binaryMissing(ctx: BenchContext): string | null {
  try {
    Deno.statSync(berthBinary(ctx.binDir));
    return null;
  } catch {
    return "bin/berth is not built (make build)";
  }
}

/** Workload 7: berth's client against ctr. */
export const startup: Workload = {
  id: 7,
  name: "client start-up",
  async run(ctx: BenchContext) {
    const rounds = ctx.params.startupRounds;
    const figures: Figure[] = [];
    const cases = [
      { args: ["version"], needsDaemon: true },
      { args: ["tasks", "ls"], needsDaemon: true },
      { args: ["--version"], needsDaemon: false },
    ];
    for (const c of cases) {
      const what = c.args.join(" ");
      ctx.progress(`7. ${what} x${rounds}`);
      const sides = await interleave(
        rounds,
        [
          {
            name: "berth",
            unavailable: c.needsDaemon ? ctx.berth.unavailable : binaryMissing(ctx),
            once: async () =>
              check(
                `berth ${what}`,
                c.needsDaemon
                  ? await ctx.berth.client(c.args, { timeoutMs: 30_000 })
                  : await runTool(berthBinary(ctx.binDir), c.args, { timeoutMs: 30_000 }),
              ).ms,
          },
          {
            name: "containerd",
            once: async () =>
              check(
                `ctr ${what}`,
                c.needsDaemon
                  ? await ctx.containerd.client(c.args, { timeoutMs: 30_000 })
                  : await runTool("ctr", c.args, { timeoutMs: 30_000 }),
              ).ms,
          },
        ],
        ctx.progress,
        { warmup: 1 },
      );
      figures.push(figure({
        workload: `7. client \`${what}\``,
        metric: "wall time",
        unit: "ms",
        better: "lower",
        berthLabel: `berth ${what}`,
        containerdLabel: `ctr ${what}`,
        berth: sides.berth,
        containerd: sides.containerd,
        target: { op: "<=", value: 2.0 },
        note: c.needsDaemon ? undefined : "no daemon involved: process start-up only",
      }));
    }
    return figures;
  },
};
