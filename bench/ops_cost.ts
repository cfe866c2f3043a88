/**
 * What operability costs (issue 18): two berth daemons from the same build,
 * one with nothing configured and one with `[metrics]` (and its gRPC
 * histograms) and `[debug]` on, measured side by side in interleaved rounds:
 * daemon RSS once idle, gRPC Version round trips per second with 1 and 32
 * calls in flight (every request passes the observers the two sections hook
 * in), and a scrape while busy is not part of it. With nothing configured
 * the daemon imports neither module and hooks no observer (src/daemon/ops.ts),
 * so "off" does strictly less than "on": the on/off ratio bounds what off
 * costs from above.
 *
 * Usage: deno run -A bench/ops_cost.ts [--rounds N] [--ms MS]   (needs make build)
 * @module
 */

import { parseArgs } from "node:util";
import { spawnDaemonWithConfig, stopDaemon, waitForSocket } from "../tests/support/daemon.ts";
import { unaryRate, versionCall } from "./grpc.ts";
import { interleave } from "./interleave.ts";
import { isMeasured, type Side as Figures } from "./figures.ts";

const BIN = new URL("../bin/berth", import.meta.url).pathname;

interface Side {
  name: string;
  dir: string;
  address: string;
  pid: number;
  stop(): Promise<void>;
}

async function start(name: string, config: string): Promise<Side> {
  const dir = await Deno.makeTempDir({ prefix: `berth-opscost-${name}-` });
  const address = `${dir}/berth.sock`;
  const d = await spawnDaemonWithConfig(dir, config.replaceAll("DIR", dir), address, BIN);
  await waitForSocket(address, d);
  return {
    name,
    dir,
    address,
    pid: d.child.pid,
    async stop() {
      await stopDaemon(d);
      await Deno.remove(dir, { recursive: true });
    },
  };
}

function rssMiB(pid: number): number {
  const kb = /^VmRSS:\s+(\d+)/m.exec(Deno.readTextFileSync(`/proc/${pid}/status`))?.[1];
  return Number(kb) / 1024;
}

const { values } = parseArgs({
  args: Deno.args,
  options: { rounds: { type: "string", default: "7" }, ms: { type: "string", default: "1000" } },
});
const rounds = Number(values.rounds);
const ms = Number(values.ms);

const sides = [
  await start("off", "version = 2\n"),
  await start("metrics", `version = 2\n[metrics]\n  address = "127.0.0.1:0"\n`),
  await start(
    "metrics+histogram",
    `version = 2\n[metrics]\n  address = "127.0.0.1:0"\n  grpc_histogram = true\n`,
  ),
  await start("debug", `version = 2\n[debug]\n  address = "DIR/debug.sock"\n`),
];
/** A figure's median; a side that failed ends the run with its reason. */
function median(f: Figures): number {
  if (!isMeasured(f)) throw new Error(`not measured: ${f.na}`);
  return f.median;
}

/** One table row: each side's figure and its ratio to "off". */
function row(what: string, values: number[], digits: number): string {
  const cells = values.map((v, i) =>
    i === 0 ? v.toFixed(digits) : `${v.toFixed(digits)} (${(v / values[0]).toFixed(2)}x)`
  );
  return `| ${what} | ${cells.join(" | ")} |`;
}

try {
  await new Promise((r) => setTimeout(r, 2000));
  const lines = [
    `berth daemon with operability sections configured vs nothing configured (same build, ${
      new Date().toISOString()
    }, ${rounds} rounds of ${ms} ms)`,
    "",
    `| figure | ${sides.map((s) => s.name).join(" | ")} |`,
    `| --- | ${sides.map(() => "---").join(" | ")} |`,
    row("daemon RSS, idle (MiB)", sides.map((s) => rssMiB(s.pid)), 1),
  ];
  for (const inflight of [1, 32]) {
    const got = await interleave(
      rounds,
      sides.map((s) => ({
        name: s.name,
        once: () => unaryRate(s.address, "default", versionCall(), inflight, ms),
      })),
      (m) => console.error(m),
      { warmup: 1 },
    );
    lines.push(
      row(
        `gRPC Version, ${inflight} in flight (calls/s)`,
        sides.map((s) => median(got[s.name])),
        0,
      ),
    );
  }
  console.log(lines.join("\n"));
} finally {
  for (const s of sides) await s.stop();
}
