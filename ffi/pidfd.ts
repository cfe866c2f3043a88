/**
 * Process file descriptors and exit statuses: signal exactly one process
 * (no pid reuse race) and reap exactly one process, the way a subreaper
 * must when Deno reaps its own children by pid behind its back.
 *
 * @example
 * ```ts
 * import { pidfdOpen, pidfdSendSignal, waitPidfd } from "./pidfd.ts";
 * import { close } from "./fd.ts";
 * const fd = pidfdOpen(pid);
 * pidfdSendSignal(fd, "SIGTERM");
 * const exit = await waitPidfd(fd, { nonblocking: true }); // { pid, code: "killed", status: 15 }
 * close(fd);
 * ```
 * @module
 */

import { EINTR, SyscallError } from "./errno.ts";
import { check, errno, invalid, libc } from "./libc.ts";
import { READABLE, waitFd } from "./poller.ts";
import { signalNumber } from "./signal.ts";

const SYS_PIDFD_SEND_SIGNAL = 424n; // the same number on every architecture
const SYS_PIDFD_OPEN = 434n;
const P_PID = 1;
const P_PIDFD = 3;
const WNOHANG = 1;
const WEXITED = 4;
const SIGINFO_SIZE = 128;

/** How a process ended (or changed state), after waitid's CLD_* codes. */
export type ExitCode = "exited" | "killed" | "dumped" | "trapped" | "stopped" | "continued";

const CODES: readonly ExitCode[] = [
  "exited",
  "killed",
  "dumped",
  "trapped",
  "stopped",
  "continued",
];

/** One reaped process. */
export interface ExitInfo {
  /** The process that was reaped. */
  pid: number;
  /** "exited" (status is the exit code) or "killed"/"dumped" (status is the signal). */
  code: ExitCode;
  /** Exit code for "exited", signal number otherwise. */
  status: number;
}

/** Options for {@link waitPidfd} and {@link waitPid}. */
export interface WaitPidOptions {
  /** Return null at once when the process has not ended yet (WNOHANG). */
  noHang?: boolean;
}

/** Options for the nonblocking form of {@link waitPidfd}. */
export interface WaitPidfdAsyncOptions extends WaitPidOptions {
  /** Wait off the event loop; the result comes as a Promise. */
  nonblocking: true;
  /** Stops the wait (the process stays unreaped). */
  signal?: AbortSignal;
}

/**
 * Opens a pidfd for `pid` (close-on-exec). It keeps naming that process
 * even after the pid is reused; it becomes readable when the process ends.
 * ESRCH when no such process exists.
 */
export function pidfdOpen(pid: number): number {
  if (!Number.isInteger(pid) || pid <= 0) throw invalid("pidfd_open", `bad pid ${pid}`);
  const fd = Number(libc().sys_pidfd_open(SYS_PIDFD_OPEN, pid, 0));
  return check(fd, "pidfd_open", String(pid));
}

/**
 * Sends `signal` (a name or number; 0 only checks the process is alive) to
 * the process of `pidfd`. ESRCH once that process has ended, even if its
 * pid now belongs to another process.
 */
export function pidfdSendSignal(pidfd: number, signal: number | Deno.Signal): void {
  const sig = signalNumber(signal);
  const r = Number(libc().sys_pidfd_send_signal(SYS_PIDFD_SEND_SIGNAL, pidfd, sig, null, 0));
  check(r, "pidfd_send_signal", `pidfd ${pidfd}, ${sig}`);
}

let info: Uint8Array<ArrayBuffer> | undefined;

/** One synchronous waitid; null when WNOHANG found nothing. */
function waitidOnce(idtype: number, id: number, options: number, detail: string): ExitInfo | null {
  const lib = libc();
  const buf = info ??= new Uint8Array(SIGINFO_SIZE);
  const view = new DataView(buf.buffer);
  for (;;) {
    buf.fill(0);
    if (lib.waitid(idtype, id, buf, options) === 0) break;
    const e = errno();
    if (e !== EINTR) throw new SyscallError("waitid", e, detail);
  }
  // siginfo_t on LP64: si_code at 8, then si_pid at 16 and si_status at 24.
  const pid = view.getInt32(16, true);
  if (pid === 0) return null;
  const code = CODES[view.getInt32(8, true) - 1] ?? "exited";
  return { pid, code, status: view.getInt32(24, true) };
}

/**
 * Reaps the process of `pidfd` (waitid P_PIDFD, WEXITED), which must be a
 * child of this process (ECHILD otherwise, also when someone else reaped
 * it). Returns null with `noHang` while it still runs. Like {@link waitPid},
 * never use it on a child that Deno started itself (spawn's `isOwnChild`):
 * Deno would lose that child's exit status.
 *
 * With `nonblocking: true` it resolves once the process ends, without
 * blocking the event loop: the pidfd's readiness is awaited on a worker
 * thread (see poller.ts) and waitid itself then runs here with WNOHANG,
 * so a failure carries the right errno. (errno is thread-local: after a
 * waitid run on the worker thread, reading it from here would report
 * whatever this thread last left.) Without it, the call blocks the thread
 * until the process ends unless `noHang` is set.
 */
export function waitPidfd(pidfd: number, opts: WaitPidfdAsyncOptions): Promise<ExitInfo | null>;
export function waitPidfd(
  pidfd: number,
  opts?: WaitPidOptions & { nonblocking?: false },
): ExitInfo | null;
export function waitPidfd(
  pidfd: number,
  opts: WaitPidOptions & { nonblocking?: boolean; signal?: AbortSignal },
): ExitInfo | null | Promise<ExitInfo | null>;
export function waitPidfd(
  pidfd: number,
  opts: WaitPidOptions & { nonblocking?: boolean; signal?: AbortSignal } = {},
): ExitInfo | null | Promise<ExitInfo | null> {
  const detail = `P_PIDFD ${pidfd}`;
  if (!opts.nonblocking) {
    return waitidOnce(P_PIDFD, pidfd, WEXITED | (opts.noHang ? WNOHANG : 0), detail);
  }
  return (async () => {
    for (;;) {
      // Try first: an ended process, or an error (ECHILD, EBADF, EINVAL for
      // a non-pidfd), is reported without a round trip to the worker.
      const exit = waitidOnce(P_PIDFD, pidfd, WEXITED | WNOHANG, detail);
      if (exit || opts.noHang) return exit;
      await waitFd(pidfd, READABLE, "waitid", { signal: opts.signal });
    }
  })();
}

/**
 * Reaps process `pid` (waitid P_PID, WEXITED): for orphans reparented to
 * this subreaper. Never call it for a child that Deno started and still
 * waits for (see spawn's `isOwnChild`). Blocks the thread until the
 * process ends unless `noHang` is set; prefer {@link waitPidfd} with
 * `nonblocking` for a wait that may take time.
 */
export function waitPid(pid: number, opts: WaitPidOptions = {}): ExitInfo | null {
  if (!Number.isInteger(pid) || pid <= 0) throw invalid("waitid", `bad pid ${pid}`);
  return waitidOnce(P_PID, pid, WEXITED | (opts.noHang ? WNOHANG : 0), `P_PID ${pid}`);
}
