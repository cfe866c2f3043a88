/**
 * Exits of the processes the shim is parent of (as child subreaper), taken
 * without races and without ever taking the status of a process that Deno
 * itself waits for.
 *
 * Why it is race-free:
 * - A container process (init or exec) becomes the shim's child when runc,
 *   its parent, exits. Until the shim reaps it, its pid cannot be reused,
 *   even once it is a zombie. So after `runc create`/`runc exec` returns,
 *   the pid from the pid file is opened as a pidfd, and that pidfd names
 *   exactly this process for good: its exit is read with waitid(P_PIDFD,
 *   WNOHANG), and signals go through pidfd_send_signal, never to a pid that
 *   was recycled.
 * - Orphans the container leaves behind are reaped by pid too (waitpid with
 *   WNOHANG on each zombie child), but never while a runc create/exec is in
 *   flight: its process may already be a zombie before its pid is known,
 *   and reaping it then would lose its exit. {@link Reaper.holdOrphans}
 *   marks those windows.
 * - Deno's own children (runc, logging programs, the publish binary) are
 *   skipped by src/spawn's isOwnChild, which holds each such pid until Deno
 *   has collected its status.
 * - Every check runs on SIGCHLD, and again whenever a pid is registered or
 *   a hold ends, so an exit that came before its registration is not missed.
 *   No thread waits per process: this costs nothing while nothing exits.
 * @module
 */

import { notFound } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { procState } from "../procfs/mod.ts";
import { isOwnChild } from "../spawn/mod.ts";
import {
  close,
  type ExitInfo,
  isErrno,
  pidfdOpen,
  pidfdSendSignal,
  waitPid,
  waitPidfd,
} from "../../ffi/mod.ts";

const SLOW_SWEEP_MS = 1000;

/** A followed process: its exit status (exit code, or 128+signal) and a safe way to signal it. */
export interface Watched {
  readonly pid: number;
  readonly exited: Promise<number>;
  /** Sends a signal through the pidfd; NotFound once the process was reaped. */
  signal(signal: number): void;
  /** Closes the pidfd (after the exit was handled). */
  close(): void;
}

/** containerd's convention: 128 + signal for a process killed by a signal. */
export function exitStatusOf(e: ExitInfo): number {
  return e.code === "exited" ? e.status : 128 + e.status;
}

class Entry implements Watched {
  reaped = false;
  closed = false;
  resolve!: (status: number) => void;
  readonly exited: Promise<number> = new Promise((r) => (this.resolve = r));
  constructor(readonly pid: number, readonly fd: number) {}

  signal(signal: number): void {
    if (this.reaped || this.closed) throw notFound(`process ${this.pid} already finished`);
    try {
      pidfdSendSignal(this.fd, signal);
    } catch (err) {
      if (isErrno(err, "ESRCH")) {
        throw notFound(`process ${this.pid} already finished`);
      }
      throw err;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}

/** Reads the shim's children from /proc (every thread's list). */
function childPids(): number[] {
  const out: number[] = [];
  try {
    for (const t of Deno.readDirSync(`/proc/${Deno.pid}/task`)) {
      const text = Deno.readTextFileSync(`/proc/${Deno.pid}/task/${t.name}/children`).trim();
      if (text) { for (const p of text.split(" ")) out.push(Number(p)); }
    }
  } catch {
    // a thread ended while listing: the next sweep sees the rest
  }
  return out;
}

/** The shim's reaper: follows container processes and reaps orphans. */
export class Reaper {
  private readonly tracked = new Map<number, Entry>();
  private holds = 0;
  private listening = false;
  private readonly onChild = () => this.sweep();
  /** A slow sweep while processes are followed: keeps the event loop alive for them (signal listeners do not) and backs up SIGCHLD. */
  private ticker: ReturnType<typeof setInterval> | null = null;
  /** Orphans reaped so far (for the state dump and tests). */
  orphansReaped = 0;

  /** Starts reacting to SIGCHLD. */
  start(): void {
    if (this.listening) return;
    Deno.addSignalListener("SIGCHLD", this.onChild);
    this.listening = true;
  }

  /** Stops reacting to SIGCHLD. */
  stop(): void {
    if (this.ticker !== null) clearInterval(this.ticker);
    this.ticker = null;
    if (!this.listening) return;
    Deno.removeSignalListener("SIGCHLD", this.onChild);
    this.listening = false;
  }

  /**
   * Follows `pid`, a child of the shim that nobody has reaped (a process
   * runc just created or exec'd, while {@link holdOrphans} is held).
   */
  watch(pid: number): Watched {
    const existing = this.tracked.get(pid);
    if (existing) return existing;
    const entry = new Entry(pid, pidfdOpen(pid));
    this.tracked.set(pid, entry);
    this.ticker ??= setInterval(() => this.sweep(), SLOW_SWEEP_MS);
    this.check(entry);
    return entry;
  }

  /** Holds off orphan reaping (while a runtime create/exec is in flight); returns the release. */
  holdOrphans(): () => void {
    this.holds++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.holds--;
      if (this.holds === 0) this.sweep();
    };
  }

  private check(entry: Entry): void {
    let exit: ExitInfo | null;
    try {
      exit = waitPidfd(entry.fd, { noHang: true });
    } catch (err) {
      // ECHILD: somebody else reaped it; its status is lost, report it plainly.
      log.error("cannot read the exit of a followed process", { pid: entry.pid, error: err });
      exit = { pid: entry.pid, code: "exited", status: 255 };
    }
    if (!exit) return;
    entry.reaped = true;
    this.tracked.delete(entry.pid);
    if (this.tracked.size === 0 && this.ticker !== null) {
      clearInterval(this.ticker);
      this.ticker = null;
    }
    entry.resolve(exitStatusOf(exit));
  }

  /** Checks every followed process, then reaps orphans (unless held). */
  sweep(): void {
    for (const entry of [...this.tracked.values()]) this.check(entry);
    if (this.holds > 0) return;
    for (const pid of childPids()) {
      if (this.tracked.has(pid) || isOwnChild(pid) || procState(pid) !== "Z") continue;
      try {
        if (waitPid(pid, { noHang: true })) this.orphansReaped++;
      } catch {
        // gone meanwhile
      }
    }
  }

  /** A line for the state dump. */
  dump(): string {
    return `reaper: following ${
      [...this.tracked.keys()].join(",") || "none"
    }; holds=${this.holds}; orphans reaped=${this.orphansReaped}`;
  }
}
