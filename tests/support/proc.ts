/**
 * Reading and ending processes by pid through /proc, for tests and the
 * benchmark. Processes are always chosen by pid, and pids are only ever
 * picked by a match on a path unique to the caller's own temporary
 * directory, so nothing that another test or the machine runs is touched.
 * @module
 */

import { procStat, procState } from "../../src/procfs/mod.ts";

/** The argv of `pid`, or null when it is gone or unreadable (kernel threads have none). */
export function readCmdline(pid: number): string[] | null {
  try {
    const raw = Deno.readTextFileSync(`/proc/${pid}/cmdline`);
    if (raw === "") return null;
    return raw.replace(/\0$/, "").split("\0");
  } catch {
    return null;
  }
}

/** Every pid on the machine except this process itself. */
export function allPids(): number[] {
  const pids: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    const pid = Number(entry.name);
    if (Number.isInteger(pid) && pid > 0 && pid !== Deno.pid) pids.push(pid);
  }
  return pids;
}

/** Pids (not this process) whose argv satisfies `match`. */
export function findProcesses(match: (pid: number, argv: string[]) => boolean): number[] {
  return allPids().filter((pid) => {
    const argv = readCmdline(pid);
    return argv !== null && match(pid, argv);
  });
}

/** Pids whose argv has an element containing `needle` (a unique temp path). */
export function processesMentioning(needle: string): number[] {
  return findProcesses((_pid, argv) => argv.some((a) => a.includes(needle)));
}

/**
 * Pids (not this process) that sit, in any cgroup hierarchy, at a path
 * starting with `prefix` (e.g. "/<namespace>/").
 */
export function processesInCgroup(prefix: string): number[] {
  return allPids().filter((pid) => {
    try {
      const text = Deno.readTextFileSync(`/proc/${pid}/cgroup`);
      // Lines are "id:controllers:path"; the path may itself contain ':'.
      return text.split("\n").some((line) => {
        const path = line.split(":").slice(2).join(":");
        return path.startsWith(prefix);
      });
    } catch {
      return false;
    }
  });
}

/** The parent pid of `pid`, or null when it is gone. */
export function parentOf(pid: number): number | null {
  const f = procStat(pid);
  return f === undefined ? null : Number(f[1]);
}

/** The pids whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  return allPids().filter((p) => parentOf(p) === pid);
}

/** True while `pid` exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const state = procState(pid);
  return state !== undefined && state !== "Z" && state !== "X";
}

function signal(pid: number, sig: Deno.Signal): void {
  try {
    Deno.kill(pid, sig);
  } catch {
    // Already gone: nothing to do.
  }
}

/**
 * Sends SIGTERM to each pid, waits up to `graceMs` for them to go, then
 * SIGKILLs the rest and waits for those too. Children of this process are
 * reaped by Deno itself (see src/spawn); others are reaped by their parent.
 */
export async function terminate(pids: number[], graceMs = 3000): Promise<void> {
  for (const pid of pids) signal(pid, "SIGTERM");
  if (await waitGone(pids, graceMs)) return;
  for (const pid of pids) if (isAlive(pid)) signal(pid, "SIGKILL");
  await waitGone(pids, 5000);
}

/** SIGKILLs each pid at once and waits for them to go. */
export async function killNow(pids: number[]): Promise<void> {
  for (const pid of pids) signal(pid, "SIGKILL");
  await waitGone(pids, 5000);
}

async function waitGone(pids: number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    // A child of ours stays a zombie until Deno reaps it; that counts as gone.
    if (pids.every((pid) => !isAlive(pid))) return true;
    if (Date.now() >= deadline) return false;
    await new Promise((r) => setTimeout(r, 20));
  }
}

function statusField(pid: number, file: string, field: string): number | null {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/${file}`);
    const m = text.match(new RegExp(`^${field}:\\s+(\\d+) kB`, "m"));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** Resident set size of `pid` in KiB (VmRSS), or null when it is gone. */
export function rssKiB(pid: number): number | null {
  return statusField(pid, "status", "VmRSS");
}

/**
 * Proportional set size of `pid` in KiB (from smaps_rollup): shared pages
 * are divided among the processes that map them, so summing PSS over a set
 * of shims is fair to one binary mapped by many.
 */
export function pssKiB(pid: number): number | null {
  return statusField(pid, "smaps_rollup", "Pss");
}
