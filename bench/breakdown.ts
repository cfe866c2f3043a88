/**
 * Where the milliseconds of one `run --rm IMG id true` go, from berth's own
 * spans: (a) berth's client -> berth daemon -> berth shim -> runc,
 * (b) Debian's ctr -> berth daemon (ctr 1.6 sends no traceparent: each of
 * the daemon's calls is a root), (c) Debian's containerd -> berth's shim
 * (the shim's spans only: containerd 1.6 sends no traceparent over ttrpc).
 * Each span is named with its median start offset and duration over N runs;
 * beside them, the floors measured in the same rounds: `runc create`,
 * `start` and `delete` of the same bundle run directly, and a one-line
 * `deno run`. Writes bench/breakdown.md (or --out FILE).
 *
 *     deno run -A bench/breakdown.ts [--runs 20] [--out bench/breakdown.md]
 *
 * Needs `make build` (bin/berth); runs as root like the rest of the bench.
 * Tracing is on for every side (sampling 1.0): a span costs a few
 * microseconds and the exports leave in the background, so the figures are
 * those of a traced run.
 * @module
 */

import { parseArgs } from "../src/args/mod.ts";
import type { ReceivedSpan } from "../src/tracing/mod.ts";
import { buildTree, msBetween, type SpanNode } from "../src/tracing/tree.ts";
import { startReceiver } from "../src/tracing/receiver.ts";
import { spawn } from "../src/spawn/mod.ts";
import { startContainerd } from "../tests/support/containerd.ts";
import { spawnDaemon, stopDaemon, waitForSocket } from "../tests/support/daemon.ts";
import { buildBusyboxImage } from "../tests/support/image.ts";
import { makeBundle } from "../tests/support/bundle.ts";
import { removeCgroup } from "../tests/support/mounts.ts";
import { runTool, type ToolResult } from "../tests/support/tool.ts";
import { snapshotBerth } from "./engines.ts";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

function check(what: string, r: ToolResult): ToolResult {
  if (r.code !== 0) throw new Error(`${what}: ${r.stderr.trim() || r.stdout.trim() || r.code}`);
  return r;
}

function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Unix ns now (the receiver's spans are in unix ns). */
function nowNs(): bigint {
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1000)) * 1000n;
}

/** One run's spans as (key -> [start offset ms, duration ms]); keys align across runs. */
type RunSpans = Map<string, { start: number; dur: number; depth: number; label: string }>;

/**
 * Flattens a run's forest into keyed rows: a key is the path of names from
 * the root, each with its occurrence number among its siblings (calls made
 * twice stay apart), so the same step of every run has the same key.
 */
function flatten(
  roots: SpanNode[],
  t0: bigint,
  rename: (name: string) => string = (n) => n,
): RunSpans {
  const out: RunSpans = new Map();
  const walk = (nodes: SpanNode[], prefix: string, depth: number) => {
    const seen = new Map<string, number>();
    for (const n of nodes) {
      const s = n.span;
      const base = `${rename(s.name)} [${s.service}]`;
      const k = (seen.get(base) ?? 0) + 1;
      seen.set(base, k);
      const key = `${prefix}/${base}#${k}`;
      out.set(key, {
        start: msBetween(t0, s.start),
        dur: msBetween(s.start, s.end),
        depth,
        label: k > 1 ? `${base} (${k})` : base,
      });
      walk(n.children, key, depth + 1);
    }
  };
  walk(roots, "", 0);
  return out;
}

/** Median table rows of many runs, in the order of the first run that has each key. */
function medians(runs: RunSpans[]): string[] {
  const order: string[] = [];
  const seen = new Set<string>();
  for (const r of runs) {
    for (const k of r.keys()) {
      if (!seen.has(k)) {
        seen.add(k);
        order.push(k);
      }
    }
  }
  const rows = [
    "| span | runs | start ms (median) | duration ms (median) |",
    "| --- | ---: | ---: | ---: |",
  ];
  for (const k of order) {
    const got = runs.map((r) => r.get(k)).filter((x) => x !== undefined);
    const first = got[0]!;
    const label = `${"&nbsp;&nbsp;".repeat(first.depth)}${first.label}`;
    rows.push(
      `| ${label.replaceAll("|", "\\|")} | ${got.length} | ${
        median(got.map((g) => g.start)).toFixed(1)
      } | ${median(got.map((g) => g.dur)).toFixed(1)} |`,
    );
  }
  return rows;
}

function wallRow(name: string, xs: number[]): string {
  return `| ${name} | ${xs.length} | ${median(xs).toFixed(1)} | ${Math.min(...xs).toFixed(1)} | ${
    Math.max(...xs).toFixed(1)
  } |`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { runs: { type: "string" }, out: { type: "string" } },
  });
  const runs = Number(values.runs ?? 20);
  if (!(Number.isInteger(runs) && runs > 0)) throw new Error(`--runs ${values.runs}: want a count`);
  const out = values.out ?? `${REPO}/bench/breakdown.md`;
  const tmp = await Deno.makeTempDir({ prefix: "berth-breakdown-" });
  // Short: a shim socket is this directory plus 65 characters, within 107.
  const shimDir = await Deno.makeTempDir({ prefix: "bds" });
  const receiver = await startReceiver();
  const otlp = `127.0.0.1:${receiver.port}`;
  const { binDir, missing } = await snapshotBerth(REPO, tmp);
  if (missing !== null) throw new Error(missing);
  const berth = `${binDir}/berth`;
  const img = await buildBusyboxImage(tmp);
  const path = `${binDir}:${Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin"}`;

  // berth daemon, tracing on (every call sampled), exporting to the receiver.
  await Deno.writeTextFile(
    `${tmp}/berth.toml`,
    [
      "version = 2",
      `[plugins."io.containerd.tracing.processor.v1.otlp"]`,
      `  endpoint = "${otlp}"`,
      `  insecure = true`,
      `  protocol = "http/json"`,
      `[plugins."io.containerd.internal.v1.tracing"]`,
      `  sampling_ratio = 1.0`,
      "",
    ].join("\n"),
  );
  const address = `${tmp}/bd/berth.sock`;
  const ns = `bd${crypto.randomUUID().slice(0, 6)}`;
  const daemon = spawnDaemon(
    [
      "--config",
      `${tmp}/berth.toml`,
      "--root",
      `${tmp}/bd/root`,
      "--state",
      `${tmp}/bd/state`,
      "--address",
      address,
    ],
    berth,
    { PATH: path },
  );
  // containerd, its shims (berth's, here) told to trace every call and export to the receiver.
  const ctd = await startContainerd({
    extraPath: [binDir],
    env: {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://${otlp}`,
      OTEL_EXPORTER_OTLP_PROTOCOL: "http/json",
      OTEL_TRACES_SAMPLER: "always_on",
      BERTH_SHIM_SOCKET_DIR: shimDir,
    },
  });
  const floorDir = `${tmp}/floor`;
  const bundle = `${floorDir}/bundle`;
  const runcRoot = `${floorDir}/runc-root`;
  const cgroupParent = `berth-breakdown-${tmp.slice(-6)}`;
  const oneLiner = `${tmp}/one.ts`;
  try {
    await waitForSocket(`${address}.ttrpc`, daemon);
    const b = (a: string[], env?: Record<string, string>) =>
      runTool(berth, ["--address", address, "--namespace", ns, ...a], {
        timeoutMs: 120_000,
        env: { PATH: path, ...env },
      });
    const bctr = (a: string[]) =>
      runTool("ctr", ["--address", address, "--namespace", ns, ...a], { timeoutMs: 120_000 });
    check("berth import", await b(["images", "import", img.archive]));
    check("containerd import", await ctd.ctr(["images", "import", img.archive]));
    await makeBundle(bundle, { args: ["true"] });
    const spec = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
    spec.linux.cgroupsPath = `/${cgroupParent}/floor`;
    await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec));
    await Deno.writeTextFile(oneLiner, "console.log(1);\n");
    const deno = Deno.execPath();
    check("deno warm-up", await runTool(deno, ["run", oneLiner]));

    const sideA: RunSpans[] = [];
    const sideB: RunSpans[] = [];
    const sideC: RunSpans[] = [];
    const wall: Record<string, number[]> = {
      "berth run --rm (traced, client to exit)": [],
      "ctr run --rm -> berth daemon": [],
      "ctr run --rm -> containerd -> berth shim": [],
      "runc create": [],
      "runc start": [],
      "runc delete": [],
      "runc create+start+delete": [],
      "deno run (one line)": [],
    };
    const procs: Record<string, number[]> = { a: [], b: [], c: [] };
    /** The spans of services `svc` that started inside [from, to]. */
    const window = (from: bigint, to: bigint, svc: (s: ReceivedSpan) => boolean) =>
      receiver.spans.filter((s) => s.start >= from && s.start <= to && svc(s));
    const settle = () => receiver.settle(300, 3000);
    const runcCount = (spans: ReceivedSpan[]) =>
      spans.filter((s) => s.name.startsWith("runc ")).length;
    const shimStarts = (spans: ReceivedSpan[]) =>
      spans.filter((s) => s.name === "shim start action").length;

    for (let i = 0; i < runs; i++) {
      console.error(`round ${i + 1}/${runs}`);
      // (a) berth's own client: one trace, rooted at the client's span.
      {
        const r = check(
          "berth run",
          await b(["--trace", "run", "--rm", img.ref, `a${i}`, "true"], {
            OTEL_EXPORTER_OTLP_ENDPOINT: `http://${otlp}`,
          }),
        );
        const id = /^trace ([0-9a-f]{32})/m.exec(r.stderr)?.[1];
        if (id === undefined) throw new Error(`no trace id in: ${r.stderr}`);
        await receiver.settle(
          300,
          3000,
          (spans) =>
            spans.some((s) =>
              s.traceId === id && s.parentSpanId === "" && s.service === "berth-client"
            ),
        );
        // The daemon's last spans (its Tasks/Delete ends after the shim's) may come after the client's.
        await settle();
        const spans = receiver.spans.filter((s) => s.traceId === id);
        const root = spans.find((s) => s.parentSpanId === "")!;
        wall["berth run --rm (traced, client to exit)"].push(msBetween(root.start, root.end));
        // The root is named by its command line: the same name in every round.
        const generic = (n: string) => n.replace(` ${img.ref} a${i} `, " IMG ID ");
        sideA.push(flatten(buildTree(spans), root.start, generic));
        procs.a.push(1 + runcCount(spans) + 2 * shimStarts(spans));
      }
      // (b) ctr -> berth daemon: the daemon's own roots, within the run's window.
      {
        const from = nowNs();
        const r = check("ctr run (berth)", await bctr(["run", "--rm", img.ref, `b${i}`, "true"]));
        const to = nowNs();
        await settle();
        wall["ctr run --rm -> berth daemon"].push(r.ms);
        const spans = window(from, to, (s) => s.service !== "berth-client");
        sideB.push(flatten(buildTree(spans), from));
        // ctr's default runtime is io.containerd.runc.v2: berth's daemon runs
        // containerd-shim-runc-v2 (not traced), which runs runc create, start, delete.
        procs.b.push(1 + 2 * shimStarts(spans) + 3);
      }
      // (c) containerd -> berth's shim: the shim's roots within the window.
      {
        const from = nowNs();
        const r = check(
          "ctr run (containerd, berth shim)",
          await ctd.ctr([
            "run",
            "--rm",
            "--runtime",
            "io.containerd.berth.v2",
            img.ref,
            `c${i}`,
            "true",
          ]),
        );
        const to = nowNs();
        await settle();
        wall["ctr run --rm -> containerd -> berth shim"].push(r.ms);
        const spans = window(from, to, (s) => s.service === "containerd-shim-berth-v2");
        sideC.push(flatten(buildTree(spans), from));
        // ctr, the shim's start and serve processes, runc's, and the shim's `delete` action.
        procs.c.push(1 + 2 + runcCount(spans) + 1);
      }
      // Floors: runc by hand on the same kind of bundle; a one-line deno run.
      {
        const id = `f${i}`;
        const t0 = performance.now();
        const create = await spawn("runc", ["--root", runcRoot, "create", "--bundle", bundle, id], {
          stdin: "null",
          stdout: "null",
          stderr: "null",
        }).status;
        const t1 = performance.now();
        if (!create.success) throw new Error(`runc create failed (${create.code})`);
        check("runc start", await runTool("runc", ["--root", runcRoot, "start", id]));
        const t2 = performance.now();
        check("runc delete", await runTool("runc", ["--root", runcRoot, "delete", "--force", id]));
        const t3 = performance.now();
        wall["runc create"].push(t1 - t0);
        wall["runc start"].push(t2 - t1);
        wall["runc delete"].push(t3 - t2);
        wall["runc create+start+delete"].push(t3 - t0);
        const d = check("deno run", await runTool(deno, ["run", oneLiner]));
        wall["deno run (one line)"].push(d.ms);
      }
    }

    const load = (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
    const md = [
      "# Breakdown of one `run --rm IMG id true` (generated by bench/breakdown.ts)",
      "",
      `Measured ${
        new Date().toISOString()
      } on ${Deno.hostname()} (${navigator.hardwareConcurrency} CPUs, ` +
      `load average at the end ${load}), ${runs} interleaved rounds, berth ${
        (await runTool(berth, ["--version"])).stdout.trim()
      }, command: \`deno run -A bench/breakdown.ts --runs ${runs}\`.`,
      "Every figure is a median over the rounds. Start offsets are from the first span of the run",
      "(a: the client process's start; b and c: the moment the bench launched ctr). Spans of one",
      "process nest by their call; a span's time includes its children's.",
      "",
      "## Wall times and floors (same rounds)",
      "",
      "| what | runs | median ms | min ms | max ms |",
      "| --- | ---: | ---: | ---: | ---: |",
      ...Object.entries(wall).map(([k, v]) => wallRow(k, v)),
      "",
      "Process starts per run (a: the client, shim start+serve when a `shim start action` span",
      "shows one was started, each `runc` span; b: ctr, the same shim rule, and the 3 runc",
      "invocations of containerd-shim-runc-v2, which ctr's default runtime names and which berth's",
      "daemon runs untraced; c: ctr, the berth shim's start and serve, each `runc` span, and the",
      "shim `delete` action containerd runs after the shim exits):",
      `a: median ${median(procs.a)}, b: median ${median(procs.b)}, c: median ${median(procs.c)}.`,
      "",
      "## a. berth client -> berth daemon -> berth shim -> runc (one trace)",
      "",
      ...medians(sideA),
      "",
      "## b. ctr -> berth daemon (ctr sends no traceparent: each daemon call is a root)",
      "",
      "ctr's default runtime is io.containerd.runc.v2, so berth's daemon drives containerd's Go",
      "shim here (as in bench workload 6): the shim calls end at the daemon's client spans.",
      "",
      ...medians(sideB),
      "",
      "## c. ctr -> containerd -> berth shim (shim spans only)",
      "",
      ...medians(sideC),
      "",
    ].join("\n");
    await Deno.writeTextFile(out, md);
    console.log(md);
  } finally {
    for (
      const e of (() => {
        try {
          return [...Deno.readDirSync(runcRoot)].map((x) => x.name);
        } catch {
          return [];
        }
      })()
    ) {
      await runTool("runc", ["--root", runcRoot, "delete", "--force", e]);
    }
    removeCgroup(`/${cgroupParent}`);
    await stopDaemon(daemon);
    await Deno.remove(`/run/berth/runc/${ns}`).catch(() => {}); // empty once every run --rm is done
    await ctd.stop();
    await receiver.close();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    await Deno.remove(shimDir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
