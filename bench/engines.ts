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
import { childrenOf, findProcesses, isAlive } from "../tests/support/proc.ts";
import { runTool, type ToolResult } from "../tests/support/tool.ts";
import { existsSync } from "../src/fsutil/mod.ts";
import { shimSocketDir } from "../src/runtime/mod.ts";

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
   * The directory berth's shims put their sockets (and warm spare) in for
   * this daemon, private to the run: BERTH_SHIM_SOCKET_DIR under containerd,
   * the daemon's `<state>/s` under berth's daemon.
   */
  shimSocketDir: string;
  stop(): Promise<void>;
}

/** berth's executable in `binDir` (the run's snapshot of the repository's bin/). */
export function berthBinary(binDir: string): string {
  return `${binDir}/berth`;
}

/** containerd's executables, copied into the run's bin/ (see snapshotBerth). */
export const CONTAINERD_BINARIES = ["/usr/bin/containerd", "/usr/bin/containerd-shim-runc-v2"];

/**
 * Copies the repository's bin/berth into `${tmp}/bin` (with its
 * containerd-shim-berth-v2 alias), so the whole run measures one build even
 * if bin/ is rebuilt meanwhile. Returns that directory and, when there is no
 * build, why.
 *
 * The run's executables are private copies: the deno that a bundle's
 * shebang names (the shebang is rewritten to the copy) and containerd's
 * daemon and runc shim. PSS divides each page of an executable among all
 * processes mapping it, so shared copies would let other Deno or containerd
 * processes on the machine (other test runs, this harness) pay part of the
 * run's memory, on one side more than the other.
 */
export async function snapshotBerth(
  repoRoot: string,
  tmp: string,
): Promise<{ binDir: string; missing: string | null }> {
  const binDir = `${tmp}/bin`;
  await Deno.mkdir(binDir, { recursive: true });
  for (const path of CONTAINERD_BINARIES) {
    await Deno.copyFile(path, `${binDir}/${path.slice(path.lastIndexOf("/") + 1)}`);
  }
  let build: Uint8Array;
  try {
    build = await Deno.readFile(`${repoRoot}/bin/berth`);
  } catch {
    return { binDir, missing: `${repoRoot}/bin/berth is not built (make build)` };
  }
  const bundle = build[0] === 0x23 && build[1] === 0x21; // "#!": a bundle run by deno
  if (bundle) {
    const end = build.indexOf(0x0a);
    const shebang = new TextDecoder().decode(build.subarray(0, end));
    const deno = /^#!\/usr\/bin\/env -S (\S+) run /.exec(shebang)?.[1];
    if (deno === undefined) {
      return { binDir, missing: `bin/berth: unexpected shebang ${JSON.stringify(shebang)}` };
    }
    await Deno.copyFile(deno, `${binDir}/deno`);
    const head = new TextEncoder().encode(shebang.replace(deno, `${binDir}/deno`));
    const out = new Uint8Array(head.length + build.length - end);
    out.set(head);
    out.set(build.subarray(end), head.length);
    build = out;
  }
  await Deno.writeFile(`${binDir}/berth`, build, { mode: 0o755 });
  await Deno.chmod(`${binDir}/berth`, 0o755);
  await Deno.symlink("berth", `${binDir}/containerd-shim-berth-v2`);
  return { binDir, missing: null };
}

function uniqueNamespace(prefix: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return prefix + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Idle warm spares of berth's shim in `socketDir` (processes started as
 * `shim -socket <dir>/spare spare` that serve no container yet, i.e. have no
 * children). They exist because shims run, so their memory counts as shims'.
 */
export function idleSpares(socketDir: string): number[] {
  return findProcesses((_pid, argv) => argv.includes(`${socketDir}/spare`))
    .filter((pid) => childrenOf(pid).length === 0);
}

/**
 * Starts Debian's containerd (or its copy `binary`) with `extraPath` first
 * in its PATH (so it finds containerd-shim-berth-v2 in the repository's bin/
 * when it is built, and the run's copy of containerd-shim-runc-v2).
 */
export async function startContainerdEngine(
  extraPath: string[],
  shimSocketDir: string,
  binary?: string,
): Promise<Engine & { instance: ContainerdInstance }> {
  const ctd = await startContainerd({
    binary,
    extraPath,
    namespace: uniqueNamespace("bc"),
    env: { BERTH_SHIM_SOCKET_DIR: shimSocketDir },
  });
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
    shimSocketDir,
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
export async function startBerthEngine(
  binDir: string,
  opts: { config?: (dir: string) => string } = {},
): Promise<Engine> {
  const bin = berthBinary(binDir);
  const dir = await Deno.makeTempDir({ prefix: "berth-bench-berthd-" });
  const address = `${dir}/berth.sock`;
  const ttrpcAddress = `${address}.ttrpc`;
  const namespace = uniqueNamespace("bb");
  const logPath = `${dir}/daemon.log`;
  const path = [binDir, Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin"].join(
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

  const base = {
    kind: "berth" as const,
    address,
    ttrpcAddress,
    namespace,
    dir,
    client,
    ctr,
    // Where the daemon's shims put their sockets (and a warm spare).
    shimSocketDir: shimSocketDir(`${dir}/state`),
  };

  if (!existsSync(bin)) {
    await Deno.remove(dir, { recursive: true });
    return {
      ...base,
      unavailable: "bin/berth is not built (make build)",
      daemonPid: null,
      stop: () => Promise.resolve(),
    };
  }

  // A config (plugin sections) when asked; the flags still set the paths.
  const configPath = `${dir}/config.toml`;
  if (opts.config) await Deno.writeTextFile(configPath, opts.config(dir));
  const withConfig = opts.config ? '--config "$5" ' : "";
  const child = spawn("/bin/sh", [
    "-c",
    `exec "$0" daemon ${withConfig}--root "$1" --state "$2" --address "$3" >>"$4" 2>&1`,
    bin,
    `${dir}/root`,
    `${dir}/state`,
    address,
    logPath,
    configPath,
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
    if (existsSync(address) || existsSync(ttrpcAddress)) break;
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
    stop,
  };
}

/** True while the engine's daemon runs. */
export function engineRunning(e: Engine): boolean {
  return e.daemonPid !== null && isAlive(e.daemonPid);
}
