/**
 * The benchmark harness cannot rot: one --quick run (into a temporary
 * output directory) must give every workload a figure or an explicit n/a
 * with its reason, real numbers for the containerd and runc sides, the JSON
 * and SVG files, and nothing left running, mounted or on disk.
 */
import assert from "node:assert/strict";
import { runTool } from "./support/tool.ts";
import { processesInCgroup, processesMentioning } from "./support/proc.ts";
import { mountsUnder } from "./support/mounts.ts";

const repoRoot = decodeURIComponent(new URL("..", import.meta.url).pathname).replace(/\/$/, "");

interface SideJson {
  median?: number;
  p90?: number;
  na?: string;
}

interface FigureJson {
  workload: string;
  berth: SideJson;
  containerd: SideJson;
  runc?: SideJson;
}

function checkSide(where: string, s: SideJson): void {
  if (s.na !== undefined) {
    assert.ok(s.na.trim().length > 0, `${where}: n/a without a reason`);
  } else {
    assert.ok(
      Number.isFinite(s.median) && Number.isFinite(s.p90),
      `${where}: no numbers: ${JSON.stringify(s)}`,
    );
    assert.ok(s.median! > 0, `${where}: median ${s.median}`);
  }
}

Deno.test({
  name: "bench/main.ts --quick measures every workload and leaves nothing behind",
  // Generous: the run takes about two minutes on 2 cores (workload 9 starts two CRI daemons);
  // a hang must still end.
  async fn() {
    const out = await Deno.makeTempDir({ prefix: "berth-bench-quick-test-" });
    try {
      const started = performance.now();
      const r = await runTool(Deno.execPath(), [
        "run",
        "-A",
        "bench/main.ts",
        "--quick",
        "--out",
        out,
      ], {
        cwd: repoRoot,
        timeoutMs: 420_000,
      });
      const seconds = (performance.now() - started) / 1000;
      assert.equal(r.code, 0, `bench exited ${r.code}:\n${r.stderr.slice(-3000)}`);
      assert.match(r.stdout, /\| Workload \| Unit \| berth median \/ p90 \|/);

      const report = JSON.parse(await Deno.readTextFile(`${out}/latest.json`));
      assert.equal(report.mode, "quick");
      assert.deepEqual(report.errors, []);
      const figures = report.figures as FigureJson[];
      for (let id = 1; id <= 7; id++) {
        const mine = figures.filter((f) => new RegExp(`^${id}[a-z]?\\. `).test(f.workload));
        assert.ok(mine.length > 0, `workload ${id} produced no figure`);
        for (const f of mine) {
          checkSide(`${f.workload} berth`, f.berth);
          checkSide(`${f.workload} containerd`, f.containerd);
          if (f.runc) checkSide(`${f.workload} runc`, f.runc);
          // containerd and runc are here today: their sides must be real numbers.
          // Only workload 4 depends on bench/ttrpc.ts, another part of the project.
          if (id !== 4 || !/bench\/ttrpc\.ts/.test(f.containerd.na ?? "")) {
            assert.equal(f.containerd.na, undefined, `${f.workload}: containerd side not measured`);
          }
        }
      }
      // berth's side of the core paths exists today: run, ttrpc, gRPC, client start-up.
      for (const f of figures.filter((f) => /^(1|4|6|7)[a-z]?\. /.test(f.workload))) {
        assert.equal(f.berth.na, undefined, `${f.workload}: berth side not measured`);
      }
      const run = figures.find((f) => f.workload.startsWith("1. "))!;
      assert.ok(run.runc && run.runc.na === undefined, "runc floor measured");

      const svg = await Deno.readTextFile(`${out}/latest.svg`);
      assert.ok(svg.startsWith("<svg ") && svg.trimEnd().endsWith("</svg>"));

      // Nothing of the run remains: its directories, processes naming them, mounts under them.
      assert.equal(report.cleanup.clean, true, JSON.stringify(report.cleanup.leftover));
      const dirs = report.cleanup.dirs as string[];
      assert.ok(dirs.length >= 4, `dirs recorded: ${dirs}`);
      for (const d of dirs) {
        assert.throws(() => Deno.lstatSync(d), Deno.errors.NotFound, `${d} left behind`);
        assert.deepEqual(processesMentioning(d), [], `processes of ${d} left running`);
        assert.deepEqual(mountsUnder(d), [], `mounts under ${d} left`);
      }
      // Containers: every process in a cgroup of the run's namespaces is gone, and their runc state.
      const namespaces = report.cleanup.namespaces as string[];
      assert.equal(namespaces.length, 2);
      for (const ns of namespaces) {
        assert.deepEqual(
          processesInCgroup(`/${ns}/`),
          [],
          `containers of namespace ${ns} left running`,
        );
        for (const runDir of ["/run/containerd", "/run/berth"]) {
          assert.throws(() => Deno.lstatSync(`${runDir}/runc/${ns}`), Deno.errors.NotFound);
        }
      }
      console.log(`bench --quick took ${seconds.toFixed(1)} s`);
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});
