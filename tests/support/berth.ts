/**
 * The built client against a daemon of its own: a private copy of bin/berth
 * (so a rebuild of the shared tree while tests run cannot pull the executable
 * from under them) and a `berth daemon` on a test's temporary paths.
 * @module
 */

import { privateBerth } from "./binary.ts";
import { spawnDaemon, stopDaemon, waitForSocket } from "./daemon.ts";
import { cgroupRoots, removeCgroup, removeIfEmpty } from "./mounts.ts";

function existsSync(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
import { runTool, type ToolResult } from "./tool.ts";

/**
 * {@link privateBerth}'s copy of bin/berth (and its shim alias), removed
 * when the test process unloads.
 */
export async function privateCopy(): Promise<{ path: string; dir: string }> {
  const bin = await privateBerth();
  globalThis.addEventListener("unload", () => bin.remove());
  return { path: bin.path, dir: bin.dir };
}

/** A berth daemon started by a test on its own temporary paths. */
export interface Daemon {
  dir: string;
  address: string;
  /** Runs the client against this daemon. */
  berth(
    args: string[],
    opts?: { env?: Record<string, string>; timeoutMs?: number },
  ): Promise<ToolResult>;
  /** Stops the daemon by pid and removes its directory. */
  stop(): Promise<void>;
}

/** Starts `berth daemon` (executable `berth`) on a new temporary directory. */
export async function startDaemon(berth: string): Promise<Daemon> {
  const dir = await Deno.makeTempDir({ prefix: "berth-client-test-" });
  const address = `${dir}/berth.sock`;
  const d = spawnDaemon(
    ["--root", `${dir}/root`, "--state", `${dir}/state`, "--address", address],
    berth,
  );
  await waitForSocket(`${address}.ttrpc`, d);
  return {
    dir,
    address,
    berth: (args, opts = {}) =>
      runTool(berth, ["--address", address, ...args], {
        env: opts.env,
        timeoutMs: opts.timeoutMs ?? 60_000,
      }),
    async stop() {
      await stopDaemon(d);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Writes a small busybox tree (sh, echo, cat, ls, sleep, stty, true) under `dir`; returns it. */
export async function makeRootDir(dir: string): Promise<string> {
  const root = `${dir}/imgroot`;
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
  for (const a of ["sh", "echo", "cat", "ls", "sleep", "stty", "true"]) {
    await Deno.symlink("busybox", `${root}/bin/${a}`);
  }
  return root;
}

/**
 * Removes what a test made in namespace `ns` of a daemon (`berth` runs the
 * client against it), also after a failure part way: its tasks (killed), its
 * containers (their snapshots and rootfs mounts go with them), then, once
 * the daemon is stopped, the namespace's runc root and cgroups. Call before
 * stopping the daemon; `afterStop` after it (only for a namespace of the
 * test's own: other tests share "default"), which retries for up to 3 s.
 */
export async function clearNamespace(
  berth: Daemon["berth"],
  ns: string,
): Promise<{ afterStop(): Promise<void> }> {
  const list = async (args: string[]) =>
    (await berth(["-n", ns, ...args])).stdout.split("\n").filter((l) => l.trim());
  for (const id of await list(["tasks", "ls", "-q"])) {
    await berth(["-n", ns, "tasks", "delete", "--force", id]);
  }
  for (const id of await list(["containers", "ls", "-q"])) {
    await berth(["-n", ns, "containers", "rm", id]);
  }
  return {
    // The shims' last removals can land just after the daemon stopped: try for a while.
    async afterStop() {
      const runcRoot = `/run/berth/runc/${ns}`;
      for (let i = 0; i < 30; i++) {
        removeCgroup(`/${ns}`);
        removeIfEmpty(runcRoot);
        const left = cgroupRoots().some((r) => existsSync(`${r}/${ns}`)) || existsSync(runcRoot);
        if (!left) return;
        await new Promise((r) => setTimeout(r, 100));
      }
    },
  };
}
