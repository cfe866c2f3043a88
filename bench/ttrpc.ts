/**
 * ttrpc unary round trips per second, berth's server against the Go ttrpc
 * server inside Debian's containerd-shim-runc-v2, measured in one run with
 * interleaved rounds and the same berth client for both. Both servers answer
 * `containerd.task.v2.Task/State` for an id they do not know (NotFound), with
 * a ~200-byte request; berth's server runs in its own process, as the Go one
 * does. Besides calls/s it reports each server's CPU time per call (from
 * /proc), which does not depend on how fast the client is.
 *
 * Usage: deno run -A bench/ttrpc.ts [--quick]
 *
 * Also a library: {@link benchTtrpc} is what the bench harness calls, and
 * {@link startRuncShim} starts a Go shim for tests.
 * @module
 */

import { run, runChecked, spawn } from "../src/spawn/mod.ts";
import { BerthError, Code, notFound } from "../src/errdefs/mod.ts";
import { Task } from "../src/gen/containerd/task/v2/shim_pb.ts";
import { TTRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import { type Client, connect, Server, serviceClient } from "../src/ttrpc/mod.ts";
import { findProcesses } from "../tests/support/proc.ts";
import { removeIfEmpty } from "../tests/support/mounts.ts";
import { existsSync } from "../src/fsutil/mod.ts";

const SHIM = "containerd-shim-runc-v2";
const RUN_DIR = "/run/containerd";

function randomHex(bytes: number): string {
  return [...crypto.getRandomValues(new Uint8Array(bytes))].map((b) =>
    b.toString(16).padStart(2, "0")
  ).join("");
}

/** A Go runc shim started by {@link startRuncShim}. */
export interface GoShim {
  /** Path of the shim's ttrpc socket (under /run/containerd/s). */
  socket: string;
  /** The serve process's pid as this machine sees it. */
  pid: number;
  /** The same process's pid inside its pid namespace (what Connect reports). */
  nsPid: number;
  /** containerd namespace and task id the shim was started for. */
  namespace: string;
  id: string;
  /** The bundle directory (the shim's working directory). */
  bundle: string;
  /** What the shim logged (its `log` fifo, copied to a file). */
  log(): string;
  /** Ends the shim if it still runs, reaps it, removes its socket and directories. */
  stop(): Promise<void>;
}

/**
 * Starts Debian's containerd-shim-runc-v2 the way containerd does: its
 * `start` action with -namespace/-address/-publish-binary/-id, run in the
 * bundle directory with TTRPC_ADDRESS set, a `log` fifo in the bundle that
 * something reads, and the address it prints on stdout.
 *
 * The `start` process exits once the serving process runs, so the server
 * becomes an orphan; this machine's pid 1 does not reap orphans. So
 * everything runs in a new pid namespace whose init is a shell waiting on
 * our pipe: when {@link GoShim.stop} closes the pipe, the kernel ends and
 * reaps whatever is left in the namespace. Nothing can outlive the test.
 * The namespace has its own /proc (and so its own mount table): pids the
 * shim reports are pids in that namespace, see {@link GoShim.nsPid}.
 */
export async function startRuncShim(
  opts: { ttrpcAddress?: string; prepareBundle?: (dir: string) => Promise<void> } = {},
): Promise<GoShim> {
  const dir = await Deno.makeTempDir({ prefix: "berth-goshim-" });
  const namespace = `berth-${randomHex(3)}`;
  const id = `shim-${randomHex(6)}`;
  const bundle = `${dir}/${namespace}/${id}`;
  const runExisted = existsSync(RUN_DIR);
  const socketsExisted = existsSync(`${RUN_DIR}/s`);
  const runcExisted = existsSync(`${RUN_DIR}/runc`);
  // Where the shim's runc keeps container state: unique to our namespace.
  const runcRoot = `${RUN_DIR}/runc/${namespace}`;
  await Deno.mkdir(bundle, { recursive: true });
  if (opts.prepareBundle) await opts.prepareBundle(bundle);
  // The runc shim's start reads config.json only for grouping annotations.
  else await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify({ ociVersion: "1.0.2" }));
  await runChecked("mkfifo", ["-m", "0700", `${bundle}/log`]);

  const script = [
    // containerd reads the shim's log fifo; the server exits if nobody does.
    "cat log >shim.log 2>&1 &",
    // start reads runtime options from stdin until EOF: containerd gives it none.
    'addr=$("$0" -namespace "$1" -address "$2" -publish-binary "$3" -id "$4" start </dev/null 2>start.err)',
    'echo "rc=$? $addr"',
    // Stay (as the namespace's init) until our pipe closes.
    "read _ || true",
  ].join("\n");
  const child = spawn("unshare", [
    "--pid",
    "--fork",
    // A /proc of the namespace's own: the shim and runc look up their
    // children there by pid (OOM score, pipe fds).
    "--mount-proc",
    "--kill-child",
    "/bin/sh",
    "-c",
    script,
    SHIM,
    namespace,
    `${dir}/containerd.sock`,
    "/usr/bin/containerd",
    id,
  ], {
    cwd: bundle,
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
    // Where the shim forwards its events (containerd's ttrpc socket); it
    // connects only when it has something to publish.
    env: { TTRPC_ADDRESS: opts.ttrpcAddress ?? `${dir}/containerd.sock.ttrpc` },
  });
  const stdin = child.stdin.getWriter();
  let socket = "";
  let stopped = false;

  const cleanup = async () => {
    if (stopped) return;
    stopped = true;
    // Closing the pipe ends the namespace's init; the kernel then kills and
    // reaps everything else in the namespace (the shim, the log reader).
    await stdin.close().catch(() => {});
    const timer = setTimeout(() => {
      try {
        Deno.kill(child.pid, "SIGKILL");
      } catch { /* gone */ }
    }, 5000);
    await child.status;
    clearTimeout(timer);
    // A container the shim created and nobody deleted (a failed test).
    for (const e of existsSync(runcRoot) ? Deno.readDirSync(runcRoot) : []) {
      await run("runc", ["--root", runcRoot, "delete", "--force", e.name]).catch(() => {});
    }
    removeIfEmpty(runcRoot);
    if (!runcExisted) removeIfEmpty(`${RUN_DIR}/runc`);
    if (socket) await Deno.remove(socket).catch(() => {});
    if (!socketsExisted) removeIfEmpty(`${RUN_DIR}/s`);
    if (!runExisted) removeIfEmpty(RUN_DIR);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };

  try {
    const line = await firstLine(child.stdout, 20_000);
    const m = line.match(/^rc=(\d+) (.*)$/);
    if (!m || m[1] !== "0") {
      const err = await Deno.readTextFile(`${bundle}/start.err`).catch(() => "");
      throw new Error(`${SHIM} start failed (${line.trim()}): ${err.trim()}`);
    }
    socket = m[2].trim().replace(/^unix:\/\//, "");
    let pid = 0;
    for (let i = 0; i < 250 && pid === 0; i++) {
      pid = findProcesses((_p, argv) =>
        argv[0]?.endsWith(SHIM) && argv.includes(id) && !argv.includes("start")
      )[0] ?? 0;
      if (pid === 0) {
        await new Promise((r) =>
          setTimeout(r, 20)
        );
      }
    }
    if (pid === 0) throw new Error(`${SHIM} serve process for ${id} not found`);
    const nsPid = Number(
      (await Deno.readTextFile(`/proc/${pid}/status`)).match(/^NSpid:.*\s(\d+)\s*$/m)?.[1] ?? 0,
    );
    return {
      socket,
      pid,
      nsPid,
      namespace,
      id,
      bundle,
      log: () => {
        try {
          return Deno.readTextFileSync(`${bundle}/shim.log`);
        } catch {
          return "";
        }
      },
      stop: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}

/** Reads the first line of `stream` (then lets go of it), failing after `ms`. */
async function firstLine(stream: ReadableStream<Uint8Array>, ms: number): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`no output from ${SHIM} start within ${ms} ms`)), ms);
  });
  try {
    while (!text.includes("\n")) {
      const { value, done } = await Promise.race([reader.read(), late]);
      if (done) break;
      text += value;
    }
    return text.split("\n")[0];
  } finally {
    clearTimeout(timer);
    await reader.cancel().catch(() => {});
  }
}

/** Task.State as the Go shim answers it for an id it does not know. */
function benchTaskImpl() {
  return {
    state(): never {
      throw notFound("container not created");
    },
  };
}

/** Runs a berth ttrpc server with the bench Task in this process until stdin closes. */
async function serveForBench(path: string): Promise<void> {
  const server = new Server();
  server.register(Task, benchTaskImpl());
  await server.listen(path);
  console.log("ready");
  // The parent closes our stdin to stop us (also when it dies).
  for await (const _ of Deno.stdin.readable);
  await server.close();
}

interface BerthServerProcess {
  socket: string;
  pid: number;
  stop(): Promise<void>;
}

async function startBerthServer(): Promise<BerthServerProcess> {
  const dir = await Deno.makeTempDir({ prefix: "berth-ttrpc-bench-" });
  const socket = `${dir}/berth.sock`;
  const child = spawn(Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    new URL(import.meta.url).pathname,
    "--serve",
    socket,
  ], {
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  });
  const stdin = child.stdin.getWriter();
  const stop = async () => {
    await stdin.close().catch(() => {});
    await child.status;
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  };
  try {
    const line = await firstLine(child.stdout, 30_000);
    if (line.trim() !== "ready") throw new Error(`berth bench server said ${JSON.stringify(line)}`);
  } catch (err) {
    await stop();
    throw err;
  }
  return { socket, pid: child.pid, stop };
}

/** CPU time (user+system) of `pid` in milliseconds, from /proc. */
function cpuMs(pid: number): number {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // utime and stime are fields 14 and 15 of stat; the slice starts at field 3.
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

/** ~200-byte StateRequest for an id nobody has. */
const UNKNOWN_ID = "bench-" + "x".repeat(190);

/** Calls State with `inflight` calls outstanding for `ms`; returns calls completed. */
async function load(
  client: Client,
  namespace: string,
  inflight: number,
  ms: number,
): Promise<number> {
  const task = serviceClient(client, Task, {
    defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: namespace } },
  });
  let running = true;
  let calls = 0;
  const timer = setTimeout(() => running = false, ms);
  const worker = async () => {
    while (running) {
      try {
        await task.state({ id: UNKNOWN_ID });
        throw new Error("State of an unknown id succeeded");
      } catch (err) {
        if (!(err instanceof BerthError) || err.code !== Code.NotFound) throw err;
      }
      calls++;
    }
  };
  try {
    await Promise.all(Array.from({ length: inflight }, worker));
  } finally {
    clearTimeout(timer);
  }
  return calls;
}

/** One measurement. */
export interface TtrpcSample {
  server: "berth" | "go";
  inflight: number;
  callsPerSec: number;
  /** Server CPU time per call, microseconds. */
  serverCpuUsPerCall: number;
}

/** The full result of {@link runTtrpcBench}. */
export interface TtrpcReport {
  samples: TtrpcSample[];
  /** Median calls/s per server and in-flight count. */
  median: { berth: Record<string, number>; go: Record<string, number> };
  /** Median server CPU µs per call. */
  cpuUsPerCall: { berth: Record<string, number>; go: Record<string, number> };
  /** berth / Go, by in-flight count (throughput). */
  ratio: Record<string, number>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0
    ? NaN
    : s.length % 2
    ? s[(s.length - 1) / 2]
    : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

/**
 * Measures both servers: `rounds` rounds, each running every (server,
 * in-flight) pair for `durationMs`, the server order alternating per round.
 */
export async function runTtrpcBench(
  opts: { durationMs: number; rounds: number; warmupMs?: number; progress?: (s: string) => void },
): Promise<TtrpcReport> {
  const go = await startRuncShim();
  let berth: BerthServerProcess | undefined;
  const clients: Client[] = [];
  try {
    berth = await startBerthServer();
    const targets = {
      berth: { client: await connect(berth.socket), pid: berth.pid, ns: "bench" },
      go: { client: await connect(go.socket), pid: go.pid, ns: go.namespace },
    };
    clients.push(targets.berth.client, targets.go.client);
    for (const t of Object.values(targets)) await load(t.client, t.ns, 32, opts.warmupMs ?? 1000);
    const samples: TtrpcSample[] = [];
    for (let r = 0; r < opts.rounds; r++) {
      const order = (r % 2 === 0 ? ["berth", "go"] : ["go", "berth"]) as Array<"berth" | "go">;
      for (const server of order) {
        for (const inflight of [1, 32]) {
          const t = targets[server];
          const cpu0 = cpuMs(t.pid);
          const t0 = performance.now();
          const calls = await load(t.client, t.ns, inflight, opts.durationMs);
          const secs = (performance.now() - t0) / 1000;
          const cpu = cpuMs(t.pid) - cpu0;
          const s: TtrpcSample = {
            server,
            inflight,
            callsPerSec: Math.round(calls / secs),
            serverCpuUsPerCall: Math.round((cpu * 1000 / calls) * 100) / 100,
          };
          samples.push(s);
          opts.progress?.(
            `round ${
              r + 1
            }: ${server} @${inflight}: ${s.callsPerSec} calls/s, ${s.serverCpuUsPerCall} µs CPU/call`,
          );
        }
      }
    }
    const pick = (server: string, inflight: number, f: (s: TtrpcSample) => number) =>
      median(samples.filter((s) => s.server === server && s.inflight === inflight).map(f));
    const report: TtrpcReport = {
      samples,
      median: { berth: {}, go: {} },
      cpuUsPerCall: { berth: {}, go: {} },
      ratio: {},
    };
    for (const inflight of [1, 32]) {
      for (const server of ["berth", "go"] as const) {
        report.median[server][inflight] = pick(server, inflight, (s) => s.callsPerSec);
        report.cpuUsPerCall[server][inflight] = pick(server, inflight, (s) => s.serverCpuUsPerCall);
      }
      report.ratio[inflight] =
        Math.round(report.median.berth[inflight] / report.median.go[inflight] * 100) / 100;
    }
    return report;
  } finally {
    for (const c of clients) c.close();
    await berth?.stop();
    await go.stop();
  }
}

/**
 * What bench/main.ts calls: per-round calls/s of each server at 1 and 32 in
 * flight, `{ berth: { "1": [...], "32": [...] }, go: { ... } }`.
 */
export async function benchTtrpc(
  opts: { quick: boolean; durationMs: number; rounds: number },
): Promise<{ berth: Record<string, number[]>; go: Record<string, number[]> }> {
  const report = await runTtrpcBench({ durationMs: opts.durationMs, rounds: opts.rounds });
  const out = {
    berth: { "1": [] as number[], "32": [] as number[] },
    go: { "1": [] as number[], "32": [] as number[] },
  };
  for (const s of report.samples) {
    out[s.server][String(s.inflight) as "1" | "32"].push(s.callsPerSec);
  }
  return out;
}

if (import.meta.main) {
  const args = Deno.args;
  if (args[0] === "--serve") {
    await serveForBench(args[1]);
  } else {
    const quick = args.includes("--quick");
    const report = await runTtrpcBench({
      durationMs: quick ? 1000 : 3000,
      rounds: quick ? 2 : 5,
      warmupMs: quick ? 500 : 1500,
      progress: (s) => console.error(s),
    });
    console.log(
      "ttrpc unary Task.State (unknown id, ~200-byte request), berth client, one connection",
    );
    console.log("server        in-flight   calls/s (median)   server CPU µs/call");
    for (const inflight of [1, 32]) {
      for (const server of ["berth", "go"] as const) {
        console.log(
          `${server === "berth" ? "berth (Deno)" : "Go shim     "}  ${
            String(inflight).padStart(9)
          }   ${String(report.median[server][inflight]).padStart(16)}   ${
            String(report.cpuUsPerCall[server][inflight]).padStart(18)
          }`,
        );
      }
      console.log(`ratio berth/Go at ${inflight} in flight: ${report.ratio[inflight]}`);
    }
    console.log(
      JSON.stringify({
        median: report.median,
        cpuUsPerCall: report.cpuUsPerCall,
        ratio: report.ratio,
      }),
    );
  }
}
