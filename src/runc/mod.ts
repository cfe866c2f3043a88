/**
 * A driver for OCI runtimes with runc's command line (runc, crun). Each
 * function runs one runtime command; errors carry the runtime's own message,
 * taken from its JSON log (where runc writes the reason) or its stderr.
 *
 * @example
 * ```ts
 * import { runcCreate, runcStart } from "./mod.ts";
 * const cfg = { binary: "runc", root: "/run/berth/runc/default", log: "/b/log.json" };
 * const created = await runcCreate(cfg, "c1", "/b", { pidFile: "/b/init.pid" });
 * await runcStart(cfg, "c1");
 * ```
 * @module
 */

import { BerthError, Code, notFound } from "../errdefs/mod.ts";
import { run, spawn, type Stdio } from "../spawn/mod.ts";
import type { Span } from "../tracing/mod.ts";

/** How to call the runtime: which binary, its state root, where it logs. */
export interface RuncConfig {
  /** The runtime binary (runc, crun, or a path). */
  binary: string;
  /** The runtime's state directory (`--root`). */
  root: string;
  /** The runtime's JSON log file (`--log`); errors are read back from it. */
  log?: string;
  systemdCgroup?: boolean;
  debug?: boolean;
  /** The span the calls are made for: each runtime invocation gets a child span. */
  trace?: Span;
}

/** Options of `create` and `exec`. */
export interface StartOptions {
  pidFile: string;
  consoleSocket?: string;
  noPivot?: boolean;
  noNewKeyring?: boolean;
  /** stdio of the runtime process, inherited by the container when there is no terminal. */
  stdin?: Stdio;
  stdout?: Stdio;
  stderr?: Stdio;
}

/** A runtime process whose stdio the container inherited. */
export interface Started {
  /** The container process's pid, read from the pid file. */
  pid: number;
  /** The runtime's child handle: its piped stdio now belongs to the container. */
  child: Deno.ChildProcess;
}

function globalArgs(cfg: RuncConfig): string[] {
  const args = ["--root", cfg.root];
  if (cfg.log) args.push("--log", cfg.log, "--log-format", "json");
  if (cfg.systemdCgroup) args.push("--systemd-cgroup");
  if (cfg.debug) args.push("--debug");
  return args;
}

/** The last error the runtime wrote to its JSON log, if any. */
async function lastLoggedError(cfg: RuncConfig): Promise<string | undefined> {
  if (!cfg.log) return undefined;
  let text: string;
  try {
    text = await Deno.readTextFile(cfg.log);
  } catch {
    return undefined;
  }
  let last: string | undefined;
  for (const line of text.split("\n")) {
    if (!line) continue;
    try {
      const entry = JSON.parse(line);
      if (entry.level === "error" && typeof entry.msg === "string") last = entry.msg;
    } catch {
      // a torn line from a runtime killed mid-write: skip it
    }
  }
  return last;
}

/** Builds the error for a failed runtime command, with the runtime's own reason. */
async function runtimeError(
  cfg: RuncConfig,
  command: string,
  stderr: Uint8Array,
  code: number,
): Promise<BerthError> {
  const reason = (await lastLoggedError(cfg)) ??
    (new TextDecoder().decode(stderr).trim() || `exit status ${code}`);
  const kind = /container (\S+ )?does not exist|container not found/i.test(reason)
    ? Code.NotFound
    : Code.Unknown;
  // runc's own log line already starts "runc create failed: ": said once.
  const prefix = `${cfg.binary.slice(cfg.binary.lastIndexOf("/") + 1)} ${command} failed: `;
  const text = reason.startsWith(prefix) ? reason.slice(prefix.length) : reason;
  return new BerthError(kind, `${cfg.binary} ${command} failed: ${text}`);
}

/**
 * The error for a runtime that could not be started at all (no binary, no
 * working directory): Internal, since unlike the runtime's own "does not
 * exist" it says nothing about the container, and NotFound would read as
 * "already gone" to every caller.
 */
function notStarted(cfg: RuncConfig, command: string, err: unknown): BerthError {
  return new BerthError(
    Code.Internal,
    `cannot run ${cfg.binary} ${command}: ${(err as Error).message}`,
    { cause: err },
  );
}

async function runtimeCall(
  cfg: RuncConfig,
  command: string,
  args: string[],
  input?: Uint8Array,
): Promise<Uint8Array> {
  const span = cfg.trace?.child(`runc ${command}`);
  let r;
  try {
    r = await run(cfg.binary, [...globalArgs(cfg), command, ...args], { input });
  } catch (err) {
    const e = notStarted(cfg, command, err);
    span?.finish(e);
    throw e;
  }
  if (!r.success) {
    const e = await runtimeError(cfg, command, r.stderr, r.code);
    span?.finish(e);
    throw e;
  }
  span?.finish();
  return r.stdout;
}

/** Reads a pid file the runtime wrote. */
export async function readPidFile(path: string): Promise<number> {
  const pid = parseInt((await Deno.readTextFile(path)).trim(), 10);
  if (!(pid > 0)) throw new BerthError(Code.Internal, `pid file ${path} holds no pid`);
  return pid;
}

/**
 * Runs the runtime with piped (or given) stdio, waits for it to exit, and
 * returns the pid it wrote. The runtime's stdout/stderr pipes stay with the
 * caller: the container inherited them, so they are read until EOF, not here.
 */
async function startDetached(
  cfg: RuncConfig,
  command: string,
  args: string[],
  opts: StartOptions,
): Promise<Started> {
  const full = [...globalArgs(cfg), command, "--pid-file", opts.pidFile];
  if (opts.consoleSocket) full.push("--console-socket", opts.consoleSocket);
  if (opts.noPivot) full.push("--no-pivot");
  if (opts.noNewKeyring) full.push("--no-new-keyring");
  full.push(...args);
  const span = cfg.trace?.child(`runc ${command}`);
  let child: Deno.ChildProcess;
  try {
    child = spawn(cfg.binary, full, {
      stdin: opts.stdin ?? "null",
      stdout: opts.stdout ?? "null",
      stderr: opts.stderr ?? "null",
    });
  } catch (err) {
    const e = notStarted(cfg, command, err);
    span?.finish(e);
    throw e;
  }
  const status = await child.status;
  if (!status.success) {
    // The container never started, so nothing else holds these pipes.
    const stderr = opts.stderr === "piped" ? await drain(child.stderr) : new Uint8Array();
    if (opts.stdout === "piped") await child.stdout.cancel().catch(() => {});
    if (opts.stdin === "piped") await child.stdin.close().catch(() => {});
    const e = await runtimeError(cfg, command, stderr, status.code);
    span?.finish(e);
    throw e;
  }
  span?.finish();
  return { pid: await readPidFile(opts.pidFile), child };
}

async function drain(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/** `runtime create`: sets up container `id` from `bundle`, stopped before the user process. */
export function runcCreate(
  cfg: RuncConfig,
  id: string,
  bundle: string,
  opts: StartOptions,
): Promise<Started> {
  return startDetached(cfg, "create", ["--bundle", bundle, id], opts);
}

/** `runtime exec --detach --process`: starts an extra process in a running container. */
export async function runcExec(
  cfg: RuncConfig,
  id: string,
  processSpec: unknown,
  specPath: string,
  opts: StartOptions,
): Promise<Started> {
  await Deno.writeTextFile(specPath, JSON.stringify(processSpec));
  return startDetached(cfg, "exec", ["--detach", "--process", specPath, id], opts);
}

/** `runtime start`: lets a created container run its user process. */
export async function runcStart(cfg: RuncConfig, id: string): Promise<void> {
  await runtimeCall(cfg, "start", [id]);
}

/** `runtime kill`: signals the container's init, or all its processes. */
export async function runcKill(
  cfg: RuncConfig,
  id: string,
  signal: number,
  all = false,
): Promise<void> {
  await runtimeCall(cfg, "kill", [...(all ? ["--all"] : []), id, String(signal)]);
}

/** `runtime delete`; with `force`, a running container is killed first. A missing one is fine when forced. */
export async function runcDelete(cfg: RuncConfig, id: string, force = false): Promise<void> {
  try {
    await runtimeCall(cfg, "delete", [...(force ? ["--force"] : []), id]);
  } catch (err) {
    if (force && err instanceof BerthError && err.code === Code.NotFound) return;
    throw err;
  }
}

/** `runtime pause`. */
export async function runcPause(cfg: RuncConfig, id: string): Promise<void> {
  await runtimeCall(cfg, "pause", [id]);
}

/** `runtime resume`. */
export async function runcResume(cfg: RuncConfig, id: string): Promise<void> {
  await runtimeCall(cfg, "resume", [id]);
}

/** `runtime ps`: the pids of every process in the container. */
export async function runcPs(cfg: RuncConfig, id: string): Promise<number[]> {
  const out = new TextDecoder().decode(await runtimeCall(cfg, "ps", ["--format", "json", id]))
    .trim();
  return out ? (JSON.parse(out) as number[] | null) ?? [] : [];
}

/** What `runtime state` reports about a container. */
export interface RuncState {
  id: string;
  pid: number;
  status: string;
  bundle: string;
}

/** `runtime state`; NotFound when the runtime does not know the container. */
export async function runcState(cfg: RuncConfig, id: string): Promise<RuncState> {
  const out = await runtimeCall(cfg, "state", [id]);
  const s = JSON.parse(new TextDecoder().decode(out));
  if (!s || typeof s.id !== "string") throw notFound(`container "${id}" in ${cfg.binary}`);
  return { id: s.id, pid: s.pid ?? 0, status: s.status ?? "unknown", bundle: s.bundle ?? "" };
}

/** `runtime update --resources -`: applies new OCI linux resources. */
export async function runcUpdate(cfg: RuncConfig, id: string, resources: unknown): Promise<void> {
  await runtimeCall(
    cfg,
    "update",
    ["--resources", "-", id],
    new TextEncoder().encode(JSON.stringify(resources)),
  );
}

/** `runtime checkpoint`; needs criu, whose own error is passed on when it fails. */
export async function runcCheckpoint(
  cfg: RuncConfig,
  id: string,
  opts: { imagePath: string; workPath?: string; leaveRunning?: boolean; extraArgs?: string[] },
): Promise<void> {
  const args = ["--image-path", opts.imagePath];
  if (opts.workPath) args.push("--work-path", opts.workPath);
  if (opts.leaveRunning) args.push("--leave-running");
  args.push(...(opts.extraArgs ?? []), id);
  await runtimeCall(cfg, "checkpoint", args);
}
