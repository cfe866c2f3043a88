/**
 * The two daemons the benchmark compares, behind one shape: containerd
 * (Debian's, driven by Debian's ctr) and berth daemon (driven by berth's
 * ctr-compatible client). Each runs on its own temporary root, state,
 * sockets and namespace. berth's side is detected at run time: when its
 * binary or daemon does not exist yet, the engine says so and why.
 * @module
 */

import { spawn } from "../src/spawn/mod.ts";
import {
  type ContainerdInstance,
  existingRunDirs,
  removeInstanceLeftovers,
  startContainerd,
  withFifoDir,
} from "../tests/support/containerd.ts";
import { isAlive, readCmdline } from "../tests/support/proc.ts";
import { runTool, type ToolResult } from "../tests/support/tool.ts";

/** A daemon under test and the client that drives it. */
export interface Engine {
  kind: "containerd" | "berth";
  /** Why this engine cannot be measured, or null when it runs. */
  unavailable: string | null;
  daemonPid: number | null;
  /** The gRPC socket. */
  address: string;
  /** The ttrpc socket. */
  ttrpcAddress: string;
  namespace: string;
  /** The engine's temporary directory (everything of it lives below). */
  dir: string;
  /** Runs the engine's own ctr-style client (ctr or berth) with address and namespace set. */
  client(args: string[], opts?: { timeoutMs?: number }): Promise<ToolResult>;
  /** Runs Debian's ctr against this daemon's gRPC socket. */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<ToolResult>;
  /**
   * Pids of the shims serving this daemon's containers now; with `idPrefix`,
   * only shims started for a container whose id begins with it (a shim's
   * argv names the container it was started for with `-id`).
   */
  shimPids(idPrefix?: string): number[];
  stop(): Promise<void>;
}

/** Where the repository's build puts berth. */
export function berthBinary(repoRoot: string): string {
  return `${repoRoot}/bin/berth`;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

function uniqueNamespace(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return prefix + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Shims of a daemon: processes other than the daemon whose argv passes the
 * daemon's socket (containerd's shims are started with `-address <socket>`),
 * minus short-lived ctr/runc/client processes.
 */
function shimsOf(address: string, daemonPid: number | null, idPrefix?: string): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (!Number.isInteger(pid) || pid === Deno.pid || pid === daemonPid) continue;
    const argv = readCmdline(pid);
    if (!argv || !argv.includes(address)) continue;
    const prog = argv[0].slice(argv[0].lastIndexOf("/") + 1);
    if (prog === "ctr" || prog === "runc") continue;
    // A shim's one-shot "start"/"delete" invocations end with the action.
    const last = argv[argv.length - 1];
    if (last === "start" || last === "delete") continue;
    // berth's client names the address with --address; shims use -address.
    const i = argv.indexOf(address);
    if (i > 0 && argv[i - 1] === "--address") continue;
    const id = argv.indexOf("-id");
    if (idPrefix !== undefined && id >= 0 && !argv[id + 1]?.startsWith(idPrefix)) continue;
    pids.push(pid);
  }
  return pids;
}

/**
 * Starts Debian's containerd with `extraPath` first in its PATH (so it finds
 * containerd-shim-berth-v2 in the repository's bin/ when it is built).
 */
export async function startContainerdEngine(
  extraPath: string[],
): Promise<Engine & { instance: ContainerdInstance }> {
  const ctd = await startContainerd({ extraPath, namespace: uniqueNamespace("bc") });
  return {
    kind: "containerd",
    unavailable: null,
    daemonPid: ctd.pid,
    address: ctd.address,
    ttrpcAddress: ctd.ttrpcAddress,
    namespace: ctd.namespace,
    dir: ctd.dir,
    client: ctd.ctr,
    ctr: ctd.ctr,
    shimPids: (idPrefix?: string) => shimsOf(ctd.address, ctd.pid, idPrefix),
    stop: ctd.stop,
    instance: ctd,
  };
}

async function logTail(path: string): Promise<string> {
  const text = await Deno.readTextFile(path).catch(() => "");
  const lines = text.trimEnd().split("\n").filter(Boolean);
  return lines.slice(-3).join(" | ") || "(no output)";
}

/**
 * Starts `bin/berth daemon --root R --state S --address A` on fresh
 * temporary paths and waits for its gRPC or ttrpc socket to appear. When
 * the binary is missing or the daemon exits (e.g. "not built yet"), returns
 * an engine whose `unavailable` holds the reason; nothing is left running.
 */
export async function startBerthEngine(repoRoot: string): Promise<Engine> {
  const bin = berthBinary(repoRoot);
  const dir = await Deno.makeTempDir({ prefix: "berth-bench-berthd-" });
  const address = `${dir}/berth.sock`;
  const ttrpcAddress = `${address}.ttrpc`;
  const namespace = uniqueNamespace("bb");
  const logPath = `${dir}/daemon.log`;
  const path = [`${repoRoot}/bin`, Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin"].join(
    ":",
  );
  const runDirsBefore = existingRunDirs();
  const env = { PATH: path };

  const client = (args: string[], o: { timeoutMs?: number } = {}) =>
    runTool(bin, ["--address", address, "--namespace", namespace, ...args], {
      timeoutMs: o.timeoutMs ?? 120_000,
      env,
    });
  const ctr = (args: string[], o: { timeoutMs?: number } = {}) =>
    runTool("ctr", [
      "--address",
      address,
      "--namespace",
      namespace,
      ...withFifoDir(args, `${dir}/fifo`),
    ], {
      timeoutMs: o.timeoutMs ?? 120_000,
      env,
    });

  const base = { kind: "berth" as const, address, ttrpcAddress, namespace, dir, client, ctr };

  if (!exists(bin)) {
    await Deno.remove(dir, { recursive: true });
    return {
      ...base,
      unavailable: `${bin} is not built (make build)`,
      daemonPid: null,
      shimPids: () => [],
      stop: () => Promise.resolve(),
    };
  }

  const child = spawn("/bin/sh", [
    "-c",
    'exec "$0" daemon --root "$1" --state "$2" --address "$3" >>"$4" 2>&1',
    bin,
    `${dir}/root`,
    `${dir}/state`,
    address,
    logPath,
  ], { stdout: "null", stderr: "null", env });
  const pid = child.pid;
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
  });

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      if (!exited) {
        try {
          Deno.kill(pid, "SIGTERM");
        } catch { /* gone */ }
        const deadline = Date.now() + 10_000;
        while (!exited && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
        if (!exited) {
          try {
            Deno.kill(pid, "SIGKILL");
          } catch { /* gone */ }
        }
      }
      await status;
      await removeInstanceLeftovers({
        dir,
        address,
        namespace,
        runDirsBefore,
        exclude: [pid],
      });
    })();
    return stopping;
  };

  const deadline = Date.now() + 30_000;
  let unavailable: string | null = null;
  for (;;) {
    if (exited) {
      const s = await status;
      unavailable = `berth daemon exited with status ${s.code}: ${await logTail(logPath)}`;
      break;
    }
    if (exists(address) || exists(ttrpcAddress)) break;
    if (Date.now() > deadline) {
      unavailable = `berth daemon did not open ${address} within 30 s: ${await logTail(logPath)}`;
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  if (unavailable !== null) await stop();
  return {
    ...base,
    unavailable,
    daemonPid: unavailable === null ? pid : null,
    shimPids: (idPrefix?: string) => shimsOf(address, pid, idPrefix),
    stop,
  };
}

/** True while the engine's daemon runs. */
export function engineRunning(e: Engine): boolean {
  return e.daemonPid !== null && isAlive(e.daemonPid);
}
