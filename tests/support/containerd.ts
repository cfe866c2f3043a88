/**
 * A real containerd (Debian's /usr/bin/containerd) on temporary paths, for
 * integration tests and the benchmark. Each instance has its own root, state,
 * sockets and containerd namespace, so instances never share runc state or
 * cgroups, and {@link ContainerdInstance.stop} can remove exactly what this
 * instance made.
 *
 * @example
 * ```ts
 * const ctd = await startContainerd();
 * try {
 *   const r = await ctd.ctr(["version"]);
 * } finally {
 *   await ctd.stop();
 * }
 * ```
 * @module
 */

import { spawn } from "../../src/spawn/mod.ts";
import { findProcesses, isAlive, killNow, processesInCgroup, terminate } from "./proc.ts";
import { removeCgroup, removeIfEmpty, unmountAllUnder } from "./mounts.ts";
import { runTool, type ToolResult } from "./tool.ts";
import { existsSync } from "../../src/fsutil/mod.ts";

/** Where containerd 1.6 and its runc shim keep state that is not under `state`. */
export const SHARED_RUN_DIR = "/run/containerd";

/**
 * Where berth's shim keeps its runc state and sockets (as containerd's runc
 * shim does under /run/containerd); an instance running berth's shim leaves
 * its namespace's state there.
 */
const BERTH_RUN_DIR = "/run/berth";

/** Options for {@link startContainerd}. */
export interface ContainerdOptions {
  /** The containerd executable (default Debian's /usr/bin/containerd). */
  binary?: string;
  /** Directories put before PATH, so containerd finds extra shims (containerd-shim-berth-v2). */
  extraPath?: string[];
  /** TOML appended to the generated config (extra plugin sections), or made from its directory. */
  config?: string | ((dir: string) => string);
  /** Leave the CRI plugin enabled (its section then comes with `config`). */
  cri?: boolean;
  /** containerd namespace the `ctr` helper uses (default: a unique one per instance). */
  namespace?: string;
  /** How long to wait for the socket to answer (default 30 s). */
  startTimeoutMs?: number;
  /** Environment variables for containerd (and so its shims), added to the inherited ones. */
  env?: Record<string, string>;
}

/** A running containerd started by {@link startContainerd}. */
export interface ContainerdInstance {
  pid: number;
  /** The temporary directory everything of this instance lives in. */
  dir: string;
  root: string;
  state: string;
  /** The gRPC socket. */
  address: string;
  ttrpcAddress: string;
  /** The namespace {@link ContainerdInstance.ctr} passes. */
  namespace: string;
  /** containerd's stdout and stderr. */
  logPath: string;
  /** PATH containerd runs with. */
  path: string;
  /**
   * Runs Debian's ctr against this instance: address and namespace filled
   * in, and `--fifo-dir` under the instance's directory for `run`,
   * `tasks start` and `tasks exec`.
   */
  ctr(args: string[], opts?: { timeoutMs?: number }): Promise<ToolResult>;
  /** Stops containerd and removes everything it left; safe to call more than once. */
  stop(): Promise<void>;
}

/** Pulls the tail of a log file into an error message. */
async function logTail(path: string, lines = 20): Promise<string> {
  try {
    return (await Deno.readTextFile(path)).trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

/** A namespace name unique to this instance (containerd allows letters, digits, '-'). */
function uniqueNamespace(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return "t" + [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function configToml(
  dir: string,
  address: string,
  ttrpcAddress: string,
  extra: string,
  cri: boolean,
): string {
  // The CRI plugin wants CNI and a network; the other snapshotters need
  // special filesystems; opt writes to /opt; tracing may phone out. None of
  // them is needed to import images and run containers.
  const disabled = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.internal.v1.opt",
    "io.containerd.tracing.processor.v1.otlp",
    "io.containerd.internal.v1.tracing",
  ];
  return [
    "version = 2",
    `root = ${JSON.stringify(`${dir}/root`)}`,
    `state = ${JSON.stringify(`${dir}/state`)}`,
    `disabled_plugins = ${
      JSON.stringify(cri ? disabled.filter((p) => p !== "io.containerd.grpc.v1.cri") : disabled)
    }`,
    "",
    "[grpc]",
    `  address = ${JSON.stringify(address)}`,
    "",
    "[ttrpc]",
    `  address = ${JSON.stringify(ttrpcAddress)}`,
    "",
    "[plugins]",
    '  [plugins."io.containerd.snapshotter.v1.overlayfs"]',
    '    root_path = ""',
    "",
    extra,
    "",
  ].join("\n");
}

/**
 * Starts containerd on a fresh temporary directory and waits until its gRPC
 * socket answers `ctr version`. Its output goes to `logPath` (a file, so a
 * chatty daemon can never block on a full pipe).
 */
export async function startContainerd(opts: ContainerdOptions = {}): Promise<ContainerdInstance> {
  const dir = await Deno.makeTempDir({ prefix: "berth-ctd-" });
  const root = `${dir}/root`;
  const state = `${dir}/state`;
  const address = `${dir}/containerd.sock`;
  const ttrpcAddress = `${dir}/containerd.sock.ttrpc`;
  const logPath = `${dir}/containerd.log`;
  const configPath = `${dir}/config.toml`;
  const namespace = opts.namespace ?? uniqueNamespace();
  const path = [...(opts.extraPath ?? []), Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin"]
    .join(":");
  const runDirsBefore = existingRunDirs();
  await Deno.writeTextFile(
    configPath,
    configToml(
      dir,
      address,
      ttrpcAddress,
      typeof opts.config === "function" ? opts.config(dir) : opts.config ?? "",
      opts.cri ?? false,
    ),
  );

  // sh only redirects and then becomes containerd (exec), so the pid is containerd's.
  const child = spawn("/bin/sh", [
    "-c",
    'exec "$0" --config "$1" >>"$2" 2>&1',
    opts.binary ?? "/usr/bin/containerd",
    configPath,
    logPath,
  ], { stdin: "null", stdout: "null", stderr: "null", env: { ...opts.env, PATH: path } });
  const pid = child.pid;
  let exited = false;
  const status = child.status.then((s) => {
    exited = true;
    return s;
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
      env: { PATH: path },
    });

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= cleanup();
    return stopping;
  };

  async function cleanup(): Promise<void> {
    // 1. containerd itself: SIGTERM, then SIGKILL if it lingers.
    if (!exited) {
      try {
        Deno.kill(pid, "SIGTERM");
      } catch { /* gone */ }
      const timer = new Promise<"timeout">((r) => {
        const t = setTimeout(() => r("timeout"), 10_000);
        status.finally(() => clearTimeout(t));
      });
      if (await Promise.race([status.then(() => "done" as const), timer]) === "timeout") {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
    await status;
    await removeInstanceLeftovers({ dir, address, namespace, runDirsBefore, exclude: [pid] });
  }

  // Wait for the socket to answer; fail fast if containerd died.
  const deadline = Date.now() + (opts.startTimeoutMs ?? 30_000);
  for (;;) {
    if (exited) {
      const tail = await logTail(logPath);
      await stop();
      throw new Error(`containerd exited during start-up:\n${tail}`);
    }
    if (existsSync(address)) {
      const r = await runTool("ctr", ["--address", address, "version"], { timeoutMs: 5000 });
      if (r.code === 0) break;
    }
    if (Date.now() > deadline) {
      const tail = await logTail(logPath);
      await stop();
      throw new Error(`containerd did not answer on ${address} in time:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  return { pid, dir, root, state, address, ttrpcAddress, namespace, logPath, path, ctr, stop };
}

/**
 * ctr keeps a container's stdio fifos in /run/containerd/fifo unless told
 * otherwise, and leaves them there for a detached task; the commands that
 * create fifos get the instance's own directory instead.
 */
export function withFifoDir(args: string[], fifoDir: string): string[] {
  const [a, b] = args;
  let at = -1;
  if (a === "run") at = 1;
  else if ((a === "tasks" || a === "task" || a === "t") && (b === "start" || b === "exec")) at = 2;
  if (at < 0 || args.some((x) => x === "--fifo-dir" || x.startsWith("--fifo-dir="))) return args;
  return [...args.slice(0, at), "--fifo-dir", fifoDir, ...args.slice(at)];
}

/**
 * Which of the shared run directories (containerd's and berth's shims keep
 * sockets and runc state there) exist now; an instance removes those it
 * created, once empty.
 */
export function existingRunDirs(): string[] {
  return [SHARED_RUN_DIR, BERTH_RUN_DIR].filter((p) => existsSync(p));
}

/** What {@link removeInstanceLeftovers} needs to know about an instance. */
export interface InstanceLeftovers {
  /** The instance's unique temporary directory (removed at the end). */
  dir: string;
  /** The daemon's socket: shims and runc carry it (or `dir`) in their argv. */
  address: string;
  /** The instance's containerd namespace (names its runc root and cgroups). */
  namespace: string;
  /** Which of /run/containerd and /run/berth existed before the instance started ({@link existingRunDirs}). */
  runDirsBefore: string[];
  /** Extra runc roots the instance's runtime used (besides /run/containerd/runc/<ns>). */
  runcRoots?: string[];
  /** Pids that are the instance's daemon (already stopped), never signalled again. */
  exclude?: number[];
}

/**
 * After the daemon is gone: removes the containers, shims, mounts, sockets,
 * cgroups and directories an instance left. Every pid it ends is found by
 * its argv naming the instance's own unique temporary path.
 */
export async function removeInstanceLeftovers(l: InstanceLeftovers): Promise<void> {
  // Socket paths of shims, named in each task bundle's "address" file; a
  // killed shim leaves its socket behind in the shared /run/containerd/s.
  const shimSockets = collectShimSockets(l.dir);

  // Container processes: runc knows their pids; delete --force kills them.
  const runcRoots = [
    `${SHARED_RUN_DIR}/runc/${l.namespace}`,
    `${BERTH_RUN_DIR}/runc/${l.namespace}`,
    ...(l.runcRoots ?? []),
    ...findRuncRoots(l.dir),
  ];
  for (const rr of runcRoots) await forceDeleteContainers(rr);

  // Shims (and any runc or client still at work) of this instance.
  const exclude = new Set(l.exclude ?? []);
  const isMine = (pid: number, argv: string[]) =>
    !exclude.has(pid) && argv.some((a) => a === l.address || a.includes(l.dir));
  const mine = findProcesses(isMine);
  if (mine.length > 0) await terminate(mine, 2000);
  // A shim that exits can release containers it was holding; delete again.
  for (const rr of runcRoots) await forceDeleteContainers(rr);
  const stubborn = findProcesses(isMine);
  if (stubborn.length > 0) await killNow(stubborn);
  // Container processes whose runc state was somewhere unknown: they sit in
  // cgroups under /<namespace>/, and the namespace is this instance's own.
  const contained = processesInCgroup(`/${l.namespace}/`);
  if (contained.length > 0) await killNow(contained);

  await unmountAllUnder(l.dir);
  for (const sock of shimSockets) {
    await Deno.remove(sock).catch(() => {});
    await Deno.remove(`${sock}.lock`).catch(() => {});
  }
  for (const rr of runcRoots) await Deno.remove(rr, { recursive: true }).catch(() => {});
  removeCgroup(`/${l.namespace}`);
  await Deno.remove(l.dir, { recursive: true }).catch(async (err) => {
    if (!(err instanceof Deno.errors.NotFound)) {
      // A mount that appeared late (a shim unmounting concurrently) can make
      // removal fail once; unmount and try again.
      await unmountAllUnder(l.dir);
      await Deno.remove(l.dir, { recursive: true });
    }
  });
  for (const runDir of [SHARED_RUN_DIR, BERTH_RUN_DIR]) {
    if (l.runDirsBefore.includes(runDir)) continue;
    for (const d of ["runc", "s", "fifo"]) removeIfEmpty(`${runDir}/${d}`);
    removeIfEmpty(runDir);
  }
}

function collectShimSockets(dir: string): string[] {
  const sockets: string[] = [];
  for (const base of [`${dir}/state/io.containerd.runtime.v2.task`]) {
    for (const ns of safeReadDir(base)) {
      for (const id of safeReadDir(`${base}/${ns}`)) {
        try {
          const addr = Deno.readTextFileSync(`${base}/${ns}/${id}/address`).trim();
          const path = addr.replace(/^unix:\/\//, "");
          if (path.startsWith(`${SHARED_RUN_DIR}/s/`) || path.startsWith(`${BERTH_RUN_DIR}/s/`)) {
            sockets.push(path);
          }
        } catch { /* no address file */ }
      }
    }
  }
  return sockets;
}

function safeReadDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name);
  } catch {
    return [];
  }
}

/** Directories under `dir` that hold runc state (`<root>/<id>/state.json`). */
export function findRuncRoots(dir: string, depth = 6): string[] {
  const roots: string[] = [];
  // Container root filesystems and image stores are big and never hold runc state.
  const skip = new Set(["rootfs", "snapshots", "blobs", "content", "ingest"]);
  const walk = (path: string, left: number) => {
    for (const e of safeReadDirEntries(path)) {
      if (!e.isDirectory || skip.has(e.name)) continue;
      const child = `${path}/${e.name}`;
      if (isFile(`${child}/state.json`)) {
        if (!roots.includes(path)) roots.push(path);
      } else if (left > 0) {
        walk(child, left - 1);
      }
    }
  };
  walk(dir, depth);
  return roots;
}

function isFile(path: string): boolean {
  try {
    return Deno.lstatSync(path).isFile;
  } catch {
    return false;
  }
}

function safeReadDirEntries(path: string): Deno.DirEntry[] {
  try {
    return [...Deno.readDirSync(path)];
  } catch {
    return [];
  }
}

async function forceDeleteContainers(runcRoot: string): Promise<void> {
  const ids = safeReadDir(runcRoot);
  for (const id of ids) {
    await runTool("runc", ["--root", runcRoot, "delete", "--force", id], { timeoutMs: 20_000 });
  }
}

/** True while the containerd of `instance` runs. */
export function containerdRunning(instance: ContainerdInstance): boolean {
  return isAlive(instance.pid);
}
