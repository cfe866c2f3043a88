/**
 * Process attributes the shim and daemon set on themselves: child
 * subreaper, parent-death signal, thread name, session, namespaces.
 *
 * @example
 * ```ts
 * import { setChildSubreaper } from "./process.ts";
 * setChildSubreaper(true); // orphans of our children now become ours
 * ```
 * @module
 */

import { check, cString, fromCString, invalid, libc } from "./libc.ts";
import { signalNumber } from "./signal.ts";

const PR_SET_PDEATHSIG = 1;
const PR_GET_PDEATHSIG = 2;
const PR_SET_NAME = 15;
const PR_GET_NAME = 16;
const PR_SET_CHILD_SUBREAPER = 36;
const PR_GET_CHILD_SUBREAPER = 37;

/**
 * Makes this process a child subreaper (or stops it being one): processes
 * orphaned below it are reparented to it instead of to init, so the shim
 * sees a container's process exit even after runc has gone. Reap them only
 * by pid or pidfd ({@link import("./pidfd.ts").waitPidfd}); a wait for "any
 * child" would take the exit status of Deno's own children.
 */
export function setChildSubreaper(on: boolean): void {
  check(
    libc().prctl(PR_SET_CHILD_SUBREAPER, on ? 1n : 0n, 0n, 0n, 0n),
    "prctl",
    "PR_SET_CHILD_SUBREAPER",
  );
}

/** True when this process is a child subreaper. */
export function getChildSubreaper(): boolean {
  const out = new Int32Array(1);
  check(
    libc().prctl_ptr(PR_GET_CHILD_SUBREAPER, out, 0n, 0n, 0n),
    "prctl",
    "PR_GET_CHILD_SUBREAPER",
  );
  return out[0] !== 0;
}

/**
 * Asks the kernel to send `signal` to this process when its parent thread
 * exits (0 clears it). The kernel clears it again on exec of a set-uid
 * program and in forked children.
 */
export function setPdeathsig(signal: number | Deno.Signal): void {
  const n = BigInt(signalNumber(signal));
  check(libc().prctl(PR_SET_PDEATHSIG, n, 0n, 0n, 0n), "prctl", "PR_SET_PDEATHSIG");
}

/** The parent-death signal number of this process, 0 if none. */
export function getPdeathsig(): number {
  const out = new Int32Array(1);
  check(libc().prctl_ptr(PR_GET_PDEATHSIG, out, 0n, 0n, 0n), "prctl", "PR_GET_PDEATHSIG");
  return out[0];
}

/**
 * Names the calling thread, the JS thread. Under `deno run` that is the
 * process's main thread, so ps and /proc/<pid>/comm show the name; under
 * `deno test` JS runs on another thread. The kernel keeps at most 15
 * bytes; longer names are cut, which is not an error.
 */
export function setProcessName(name: string): void {
  const bytes = new Uint8Array(16);
  bytes.set(cString(name, "prctl").subarray(0, 15));
  check(libc().prctl_ptr(PR_SET_NAME, bytes, 0n, 0n, 0n), "prctl", "PR_SET_NAME");
}

/** The calling thread's name (see {@link setProcessName}). */
export function getProcessName(): string {
  const bytes = new Uint8Array(16);
  check(libc().prctl_ptr(PR_GET_NAME, bytes, 0n, 0n, 0n), "prctl", "PR_GET_NAME");
  return fromCString(bytes);
}

/**
 * Starts a new session with this process as its leader, detached from any
 * controlling terminal; returns the session id. Fails with EPERM when the
 * process already leads a process group.
 */
export function setsid(): number {
  return check(libc().setsid(), "setsid");
}

/** Namespace types for {@link setns} (the CLONE_NEW* values); 0 accepts any. */
export const Namespace = {
  mount: 0x00020000,
  cgroup: 0x02000000,
  uts: 0x04000000,
  ipc: 0x08000000,
  user: 0x10000000,
  pid: 0x20000000,
  net: 0x40000000,
  time: 0x00000080,
} as const;

/**
 * Moves the calling thread into the namespace that `fd` refers to (an open
 * /proc/<pid>/ns/<type> file or a pidfd); `nstype` must match it or be 0.
 * Only the JS thread moves: Deno's worker threads (file IO, DNS) stay where
 * they were, and the kernel refuses mount and user namespaces (EINVAL) to
 * a multi-threaded process such as Deno. Use it for net/uts/ipc work that
 * happens in synchronous calls on this thread.
 */
export function setns(fd: number, nstype: number): void {
  if (!Number.isInteger(fd) || fd < 0) throw invalid("setns", `bad fd ${fd}`);
  check(libc().setns(fd, nstype), "setns", `${fd}, ${nstype}`);
}

/**
 * Gives the memory that glibc's allocator holds free back to the kernel
 * (malloc_trim(0), which walks every arena). Deno's start-up frees a lot
 * that stays resident otherwise: on a start without Deno's caches (the first
 * run of a new build) parsing the bundle leaves ~18 MB in a thread's arena.
 * Returns true when some memory was released.
 */
export function releaseFreeMemory(): boolean {
  return libc().malloc_trim(0n) === 1;
}
