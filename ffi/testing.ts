/**
 * Test helpers for ffi's tests: Deno's sanitizers see Deno resources, not
 * raw fds or reparented processes, so these check what they cannot.
 * @module
 */

import { run } from "../src/spawn/mod.ts";
import { close, pipe, readFd, writeFd } from "./fd.ts";

/** The open fds of this process, fd -> what it points to. */
export function openFds(): Map<number, string> {
  const fds = new Map<number, string>();
  for (const e of Deno.readDirSync("/proc/self/fd")) {
    try {
      fds.set(Number(e.name), Deno.readLinkSync(`/proc/self/fd/${e.name}`));
    } catch {
      // the fd of the directory listing itself, already gone
    }
  }
  return fds;
}

/** Pids whose parent is this process (zombies included). */
export function children(): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const stat = Deno.readTextFileSync(`/proc/${e.name}/stat`);
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      if (ppid === Deno.pid) pids.push(Number(e.name));
    } catch {
      // the process ended while we looked
    }
  }
  return pids;
}

let warm = false;

// Deno opens some fds for good on first use (the SIGCHLD machinery of its
// first child process), and so does ffi's poller: make them exist before a
// test takes its snapshot.
async function warmUp(): Promise<void> {
  if (warm) return;
  warm = true;
  await run("true", []);
  const [r, w] = pipe();
  const read = readFd(r, new Uint8Array(1)); // waits: sets up the poller
  await writeFd(w, new Uint8Array(1));
  await read;
  close(r);
  close(w);
}

/**
 * Wraps a test body: afterwards no fd opened during it may remain open and
 * no child process of ours may remain (running or zombie).
 */
export function noLeaks(fn: () => Promise<void> | void): () => Promise<void> {
  return async () => {
    await warmUp();
    const before = openFds();
    await fn();
    const leaked = [...openFds()].filter(([fd, what]) => before.get(fd) !== what);
    if (leaked.length > 0) throw new Error(`leaked fds: ${JSON.stringify(leaked)}`);
    const kids = children();
    if (kids.length > 0) throw new Error(`left child processes: ${kids.join(", ")}`);
  };
}

/** Resolves after `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
