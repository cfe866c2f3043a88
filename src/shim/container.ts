/**
 * A container as the shim sees it: its bundle, runtime settings, rootfs
 * mounts, init process and exec processes. Each method is one Task request
 * on the process model; events are the service's business.
 * @module
 */

import {
  alreadyExists,
  BerthError,
  Code,
  failedPrecondition,
  internal,
  invalidArgument,
  isCode,
  notFound,
  toBerthError,
} from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import {
  runcCheckpoint,
  type RuncConfig,
  runcCreate,
  runcDelete,
  runcExec,
  runcKill,
  runcPause,
  runcPs,
  runcResume,
  runcStart,
  runcUpdate,
  type Started,
  type StartOptions,
} from "../runc/mod.ts";
import { copyConsole, openConsoleSocket } from "./console.ts";
import { openProcessIO, type StdioPaths } from "./io.ts";
import { runcConfigFor, type RuntimeOptions, writeRuntimeOptions } from "./options.ts";
import { decodeRuntimeOptions } from "./runtime_options.ts";
import { Process } from "./process.ts";
import type { Reaper } from "./reaper.ts";
import { mountAll, type MountSpec, unmountAll } from "../mount/mod.ts";
import { cgroupOf, type CgroupRef, oomKillCount } from "./stats.ts";
import type { Any } from "@bufbuild/protobuf/wkt";
import type { Span } from "../tracing/mod.ts";

/** What Create needs from the request. */
export interface CreateParams {
  id: string;
  bundle: string;
  rootfs: MountSpec[];
  stdio: StdioPaths;
  options?: Any;
  checkpoint: string;
  /** The Create call's span, when traced: its steps nest under it. */
  trace?: Span;
}

/** Shared services a container uses. */
export interface ContainerEnv {
  namespace: string;
  reaper: Reaper;
  debug: boolean;
  /** Called once per process exit, after the exit is recorded. */
  onExit: (c: Container, p: Process) => void;
}

/** How long runc gets to hand over a terminal's master after it ran. */
const CONSOLE_TIMEOUT_MS = 30_000;

/** True unless the container has its own pid namespace (then the kernel ends its processes with init). */
async function shouldKillAllOnExit(bundle: string): Promise<boolean> {
  try {
    const spec = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
    const nss: { type?: string; path?: string }[] = spec?.linux?.namespaces ?? [];
    return !nss.some((ns) => ns.type === "pid" && !ns.path);
  } catch {
    return true;
  }
}

/** Starts the runtime for a process with the right stdio (pipes or a terminal) and follows its exit. */
async function launch(
  env: ContainerEnv,
  proc: Process,
  run: (opts: StartOptions) => Promise<Started>,
  pidFile: string,
  ioId: string,
  beforeRecord?: (status: number) => Promise<void>,
  trace?: Span,
): Promise<void> {
  const release = env.reaper.holdOrphans();
  try {
    if (proc.stdio.terminal) {
      const sock = await openConsoleSocket();
      try {
        const started = await run({ pidFile, consoleSocket: sock.path });
        await started.child.status;
        const master = await sock.receiveMaster(CONSOLE_TIMEOUT_MS);
        proc.io = await copyConsole(master, proc.stdio, ioId, env.namespace);
        proc.follow(env.reaper.watch(started.pid), beforeRecord);
      } finally {
        sock.close();
      }
    } else {
      const ioSpan = trace?.child("io setup");
      const io = await openProcessIO(proc.stdio, ioId, env.namespace);
      ioSpan?.finish();
      let started: Started;
      try {
        started = await run({ pidFile, ...io.runtimeStdio });
      } catch (err) {
        await io.close();
        throw err;
      }
      io.attach(started.child);
      proc.io = io;
      proc.follow(env.reaper.watch(started.pid), beforeRecord);
    }
  } finally {
    release();
  }
}

/** A container managed by this shim. */
export class Container {
  readonly init: Process;
  readonly execs = new Map<string, Process>();
  /** Exec ids taken by an Exec request still in progress (containerd's ReserveProcess). */
  private readonly reserved = new Set<string>();
  cgroup: CgroupRef | null = null;
  /** OOM kills in the container's cgroup already reported (TaskOOM), starting at Create's count. */
  oomKills = 0n;
  private rootfsMounted = false;

  private constructor(
    readonly id: string,
    readonly bundle: string,
    readonly runc: RuncConfig,
    readonly options: RuntimeOptions,
    readonly env: ContainerEnv,
    stdio: StdioPaths,
  ) {
    this.init = new Process("", stdio);
  }

  /** The container's rootfs directory when the request brought mounts. */
  get rootfs(): string {
    return `${this.bundle}/rootfs`;
  }

  /** Create: mounts the rootfs, runs `runc create`, and follows the init process. */
  static async create(p: CreateParams, env: ContainerEnv): Promise<Container> {
    if (p.checkpoint) {
      throw failedPrecondition(
        "restore from a checkpoint is not supported: criu does not work on this host",
      );
    }
    const options = decodeRuntimeOptions(p.options);
    const runc = runcConfigFor(options, env.namespace, p.bundle, env.debug);
    const c = new Container(p.id, p.bundle, runc, options, env, p.stdio);
    c.init.onExit = (proc) => env.onExit(c, proc);
    const trace = p.trace;
    const bundleSpan = trace?.child("bundle options");
    await writeRuntimeOptions(p.bundle, options);
    bundleSpan?.finish();
    try {
      if (p.rootfs.length > 0) {
        const mountSpan = trace?.child("mount rootfs")?.set("mounts", p.rootfs.length);
        await Deno.mkdir(c.rootfs, { mode: 0o711 }).catch((err) => {
          if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
        });
        await mountAll(p.rootfs, c.rootfs);
        mountSpan?.finish();
        c.rootfsMounted = true;
      }
      const killAll = await shouldKillAllOnExit(p.bundle);
      const tracedRunc = c.runcFor(trace);
      await launch(
        env,
        c.init,
        (opts) =>
          runcCreate(tracedRunc, p.id, p.bundle, {
            ...opts,
            noPivot: options.noPivotRoot,
            noNewKeyring: options.noNewKeyring,
          }).catch((err) => {
            throw prefixed(err, "OCI runtime create failed");
          }),
        `${p.bundle}/init.pid`,
        p.id,
        async () => {
          // With a shared pid namespace the kernel leaves init's children running.
          if (killAll) await runcKill(runc, p.id, 9, true).catch(() => {});
        },
        trace,
      );
      const cgroupSpan = trace?.child("cgroup lookup");
      c.cgroup = await cgroupOf(c.init.pid).catch(() => null);
      cgroupSpan?.finish();
      if (c.cgroup) c.oomKills = oomKillCount(c.cgroup) ?? 0n;
      return c;
    } catch (err) {
      await runcDelete(runc, p.id, true).catch(() => {});
      await c.init.releaseIO().catch(() => {});
      if (c.rootfsMounted) await unmountAll(c.rootfs).catch(() => {});
      throw err;
    }
  }

  /** The process `execId` ("" is init); NotFound for an unknown exec. */
  process(execId: string): Process {
    if (execId === "") return this.init;
    const p = this.execs.get(execId);
    if (!p) throw notFound(`process ${execId} does not exist`);
    return p;
  }

  /** All processes, init last. */
  all(): Process[] {
    return [...this.execs.values(), this.init];
  }

  /** The runtime config with `trace` as the parent of its invocations' spans. */
  runcFor(trace: Span | undefined): RuncConfig {
    return trace === undefined ? this.runc : { ...this.runc, trace };
  }

  /** The state a process reports: an exec of a paused container is paused too. */
  stateOf(p: Process): string {
    if (
      !p.isInit && (this.init.state === "paused" || this.init.state === "pausing") &&
      p.state === "running"
    ) {
      return this.init.state;
    }
    return p.state === "deleted" ? "stopped" : p.state;
  }

  /** Start: runs the init (runc start) or the exec (runc exec); `announce` queues the start event before any exit event. */
  async start(
    execId: string,
    announce: (p: Process) => void,
    trace?: Span,
  ): Promise<Process> {
    const p = this.process(execId);
    return await p.gated(async () => {
      if (p.state !== "created") {
        throw failedPrecondition(`cannot start a ${this.stateOf(p)} process`);
      }
      if (p.isInit) {
        await runcStart(this.runcFor(trace), this.id).catch((err) => {
          throw prefixed(err, "OCI runtime start failed");
        });
        p.state = "running";
      } else {
        if (this.init.state !== "running" && this.init.state !== "created") {
          throw failedPrecondition(`cannot exec in a ${this.init.state} container`);
        }
        await this.startExec(p);
      }
      announce(p);
      return p;
    });
  }

  private async startExec(p: Process): Promise<void> {
    const spec = JSON.parse(new TextDecoder().decode(p.spec!.value));
    spec.terminal = p.stdio.terminal;
    const specPath = `${this.bundle}/${p.execId}.process.json`;
    try {
      await launch(
        this.env,
        p,
        (opts) =>
          runcExec(this.runc, this.id, spec, specPath, opts).catch((err) => {
            throw prefixed(err, "OCI runtime exec failed");
          }),
        this.execPidFile(p.execId),
        p.execId,
      );
      p.state = "running";
    } catch (err) {
      // The exec never ran: release its waiters (containerd does the same).
      p.recordExit({ status: 255, at: new Date() });
      throw err;
    } finally {
      await Deno.remove(specPath).catch(() => {});
    }
  }

  private execPidFile(execId: string): string {
    return `${this.bundle}/${execId}.pid`;
  }

  /** Exec: registers a new process (started by a later Start); a taken id is AlreadyExists. */
  exec(execId: string, stdio: StdioPaths, spec: Any | undefined): Process {
    if (!execId) throw invalidArgument("exec id must not be empty");
    if (this.execs.has(execId) || this.reserved.has(execId)) throw alreadyExists(`id ${execId}`);
    if (!spec) throw invalidArgument("exec needs a process spec");
    const s = this.init.state;
    if (s !== "created" && s !== "running") {
      throw failedPrecondition(`cannot exec in a ${s} container`);
    }
    try {
      JSON.parse(new TextDecoder().decode(spec.value));
    } catch (err) {
      throw invalidArgument(`exec spec is not a JSON process: ${(err as Error).message}`);
    }
    const p = new Process(execId, stdio);
    p.spec = spec;
    p.onExit = (proc) => this.env.onExit(this, proc);
    this.execs.set(execId, p);
    return p;
  }

  /** Delete a process: an exec is forgotten, the init takes the container down (runc delete, unmount). */
  async delete(execId: string, trace?: Span): Promise<Process> {
    const p = this.process(execId);
    if (p.state === "deleted") throw notFound(`process ${execId || this.id} already deleted`);
    if (p.state !== "created" && p.state !== "stopped") {
      throw failedPrecondition(`cannot delete a ${this.stateOf(p)} process`);
    }
    if (!p.isInit) {
      p.state = "deleted";
      this.execs.delete(execId);
      await p.releaseIO();
      await Deno.remove(this.execPidFile(execId)).catch(() => {});
      if (!p.exit) p.watched?.close();
      return p;
    }
    await p.drain();
    let err: unknown = null;
    try {
      await runcDelete(this.runcFor(trace), this.id, p.state === "created");
    } catch (e) {
      if (isCode(e, Code.Internal)) {
        err = internal(`failed to delete task: ${(e as Error).message}`, e);
      } else if (!isCode(e, Code.NotFound)) err = prefixed(e, "failed to delete task");
    }
    p.state = "deleted";
    await p.releaseIO();
    if (this.rootfsMounted) {
      const span = trace?.child("unmount rootfs");
      try {
        await unmountAll(this.rootfs);
        span?.finish();
        this.rootfsMounted = false;
      } catch (e) {
        span?.finish(e);
        log.warn("failed to clean up rootfs mount", { id: this.id, error: e });
        err ??= e;
      }
    }
    if (err) throw err;
    return p;
  }

  /** Kill: a signal to one process, or with `all` to every process of the container. */
  async kill(execId: string, signal: number, all: boolean, trace?: Span): Promise<void> {
    const p = this.process(execId);
    if (p.isInit && all) {
      if (p.state === "deleted") throw notFound(`container ${this.id} deleted`);
      await runcKill(this.runcFor(trace), this.id, signal, true).catch((err) => {
        throw killError(err);
      });
      return;
    }
    p.signal(signal);
  }

  /** Pause the container (runc pause); only a running one. */
  async pause(): Promise<void> {
    const p = this.init;
    if (p.state !== "running") throw failedPrecondition(`cannot pause a ${p.state} container`);
    p.state = "pausing";
    try {
      await runcPause(this.runc, this.id).catch((err) => {
        throw prefixed(err, "OCI runtime pause failed");
      });
      if (p.state === "pausing") p.state = "paused";
    } catch (err) {
      if (p.state === "pausing") p.state = "running";
      throw err;
    }
  }

  /** Resume a paused container. */
  async resume(): Promise<void> {
    const p = this.init;
    if (p.state !== "paused") throw failedPrecondition(`cannot resume a ${p.state} container`);
    await runcResume(this.runc, this.id).catch((err) => {
      throw prefixed(err, "OCI runtime resume failed");
    });
    if (p.state === "paused") p.state = "running";
  }

  /** The pids of every process in the container (runc ps). */
  async pids(): Promise<number[]> {
    return await runcPs(this.runc, this.id);
  }

  /** Update: new linux resources (the Any holds their JSON). */
  async update(resources: Any | undefined): Promise<void> {
    const s = this.init.state;
    if (s === "stopped" || s === "deleted") {
      throw failedPrecondition(`cannot update a ${s} container`);
    }
    if (!resources) throw invalidArgument("update needs resources");
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder().decode(resources.value));
    } catch (err) {
      throw invalidArgument(`resources are not JSON: ${(err as Error).message}`);
    }
    await runcUpdate(this.runc, this.id, parsed);
  }

  /** Checkpoint through runc (needs a working criu); criu's own error is passed on. */
  async checkpoint(path: string, opts: { exit: boolean; workPath: string }): Promise<void> {
    const s = this.init.state;
    if (s !== "running" && s !== "paused") {
      throw failedPrecondition(`cannot checkpoint a ${s} container`);
    }
    const work = opts.workPath || `${this.bundle}/criu-work`;
    try {
      await runcCheckpoint(this.runc, this.id, {
        imagePath: path,
        workPath: work,
        leaveRunning: !opts.exit,
      });
    } catch (err) {
      // criu's own reason is in its dump log; keep a copy in the bundle, as containerd does.
      const kept = `${this.bundle}/criu-dump.log`;
      let reasons = "";
      try {
        const text = await Deno.readTextFile(`${work}/dump.log`);
        await Deno.writeTextFile(kept, text);
        reasons = text.split("\n").filter((l) => /Error|error/.test(l)).slice(-3).map((l) =>
          l.trim()
        ).join("; ");
      } catch {
        // no dump log: runc's message is all there is
      }
      throw new BerthError(
        Code.FailedPrecondition,
        `checkpoint failed: ${(err as Error).message.split("\n")[0]}${
          reasons ? `; criu: ${reasons}` : ""
        } (log: ${kept})`,
      );
    } finally {
      if (!opts.workPath) await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  }

  /**
   * True once when the OOM killer struck in the container since last asked
   * (checked at each exit, while the cgroup still exists: runc removes it
   * only on delete).
   */
  takeOomKill(): boolean {
    if (!this.cgroup) return false;
    const n = oomKillCount(this.cgroup);
    if (n === null || n <= this.oomKills) return false;
    this.oomKills = n;
    return true;
  }

  /** True when no process of this container is running any more. */
  get finished(): boolean {
    return this.init.state === "deleted";
  }
}

function prefixed(err: unknown, what: string): BerthError {
  const e = toBerthError(err);
  return new BerthError(e.code, `${what}: ${e.message}`, { cause: err });
}

function killError(err: unknown): BerthError {
  const msg = (err as Error).message ?? String(err);
  // A runtime that did not run (Internal) says nothing about the process: a
  // NotFound here would have the client wait for an exit that never comes.
  if (isCode(err, Code.Internal)) return internal(`OCI runtime kill failed: ${msg}`, err);
  if (/container not running|no such process|process already finished/i.test(msg)) {
    return new BerthError(Code.NotFound, "process already finished: not found");
  }
  if (/does not exist|not found/i.test(msg)) {
    return new BerthError(Code.NotFound, `no such container: ${msg}`);
  }
  return new BerthError(Code.Unknown, `unknown error after kill: ${msg}`);
}
