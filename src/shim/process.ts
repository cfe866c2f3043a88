/**
 * One process of a container, the init or an exec, with containerd's states
 * (created, running, pausing, paused, stopped, then deleted) and the rules
 * of which request is allowed in which state.
 *
 * Exit handling order, so nothing is lost or reordered:
 * 1. the reaper reports the exit (status, time);
 * 2. a start that is still being announced (TaskStart queued) finishes first;
 * 3. stdout/stderr are copied to their end (bounded wait), so the last line
 *    reaches the reader before anyone hears of the exit;
 * 4. the state becomes stopped, waiters are released, and `onExit` runs
 *    (the service publishes TaskExit there).
 * @module
 */

import type { Any } from "@bufbuild/protobuf/wkt";
import { BerthError, Code, failedPrecondition, notFound } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import type { ConsoleIO } from "./console.ts";
import type { ProcessIO, StdioPaths } from "./io.ts";
import type { Watched } from "./reaper.ts";

/** containerd's process states, plus deleted (gone from the shim's view). */
export type ProcessState = "created" | "running" | "pausing" | "paused" | "stopped" | "deleted";

/** The exit of a process. */
export interface ExitInfo {
  status: number;
  at: Date;
}

/** How long the exit waits for stdout/stderr to reach EOF (a child that kept them open must not hold it forever). */
export const DRAIN_TIMEOUT_MS = 2_000;

/** Either kind of stdio the shim carries for a process. */
export type AnyIO = ProcessIO | ConsoleIO;

/** Common part of init and exec processes. */
export class Process {
  state: ProcessState = "created";
  pid = 0;
  exit: ExitInfo | null = null;
  io: AnyIO | null = null;
  watched: Watched | null = null;
  /** An exec's OCI process spec (an Any holding JSON). */
  spec?: Any;
  /** Called once, after the exit is recorded (the service publishes TaskExit). */
  onExit: (p: Process) => void = () => {};
  private exitedResolve!: (e: ExitInfo) => void;
  /** Resolves with the exit once it is recorded (Wait). */
  readonly exited: Promise<ExitInfo> = new Promise((r) => (this.exitedResolve = r));
  /** Exits wait for this: a Start in progress that has not announced itself yet. */
  private gate: Promise<void> = Promise.resolve();

  constructor(
    /** The exec id; "" for the init process. */
    readonly execId: string,
    readonly stdio: StdioPaths,
  ) {}

  /** True for the container's init process. */
  get isInit(): boolean {
    return this.execId === "";
  }

  /** Runs `fn` (a start and its announcement); an exit seen meanwhile is held until it is done. */
  async gated<T>(fn: () => Promise<T>): Promise<T> {
    let open!: () => void;
    const prev = this.gate;
    this.gate = new Promise<void>((r) => (open = r));
    try {
      await prev;
      return await fn();
    } finally {
      open();
    }
  }

  /** Watches `watched` for the exit of this process and records it in order (see the module doc). */
  follow(watched: Watched, beforeRecord?: (status: number) => Promise<void>): void {
    this.watched = watched;
    this.pid = watched.pid;
    watched.exited.then(async (status) => {
      const at = new Date();
      try {
        if (beforeRecord) await beforeRecord(status);
      } catch (err) {
        log.warn("after-exit step failed", { pid: this.pid, error: err });
      }
      await this.gate;
      await this.drain();
      this.recordExit({ status, at });
    });
  }

  /** Waits (bounded) until the process's output copies reached EOF. */
  async drain(): Promise<void> {
    if (!this.io) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<void>((r) => (timer = setTimeout(r, DRAIN_TIMEOUT_MS)));
    await Promise.race([this.io.drained, timeout]);
    clearTimeout(timer);
  }

  /** Records the exit: stopped, waiters released, onExit called. Later calls are ignored. */
  recordExit(exit: ExitInfo): void {
    if (this.exit) return;
    this.exit = exit;
    if (this.state !== "deleted") this.state = "stopped";
    this.watched?.close();
    this.exitedResolve(exit);
    try {
      this.onExit(this);
    } catch (err) {
      log.error("exit handler failed", { pid: this.pid, error: err });
    }
  }

  /** Sends `signal` to this process only, through its pidfd (never a recycled pid). */
  signal(signal: number): void {
    if (this.state === "deleted") throw notFound(`process ${this.execId || "init"} (deleted)`);
    if (this.pid === 0 || !this.watched) {
      throw failedPrecondition(`process ${this.execId} not created`);
    }
    if (this.exit) throw new BerthError(Code.NotFound, "process already finished: not found");
    this.watched.signal(signal);
  }

  /** Resizes the process's terminal (no-op without one). */
  resize(width: number, height: number): void {
    if (this.state === "deleted" || (this.state === "stopped" && !this.isInit)) {
      throw failedPrecondition(`cannot resize a ${this.state} process`);
    }
    if (this.io && "resize" in this.io) this.io.resize(width, height);
  }

  /** CloseIO: the client is done with stdin. */
  closeStdin(): void {
    this.io?.closeStdin();
  }

  /** Releases the process's IO after waiting (bounded) for output to end. */
  async releaseIO(): Promise<void> {
    await this.drain();
    const io = this.io;
    this.io = null;
    await io?.close();
  }
}
