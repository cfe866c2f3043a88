/**
 * `berth daemon` as a child process of a test: started from source on the
 * test's temporary paths, its stderr collected, waited for until a socket
 * answers, and stopped by pid (SIGTERM, then SIGKILL if it hangs).
 */

import { spawn } from "../../src/spawn/mod.ts";

const MOD = new URL("../../mod.ts", import.meta.url).pathname;

/** A daemon process started by a test. */
export interface DaemonProc {
  child: Deno.ChildProcess;
  /** Everything written to stderr so far (complete once `done` resolves). */
  log: () => string;
  done: Promise<Deno.CommandStatus>;
}

/**
 * Starts `deno run mod.ts daemon ...args`, or `binary daemon ...args` when
 * a built executable (bin/berth) is named; `env` is added to the inherited
 * environment.
 */
export function spawnDaemon(
  args: string[],
  binary?: string,
  env?: Record<string, string>,
): DaemonProc {
  const [cmd, argv] = binary === undefined
    ? [Deno.execPath(), ["run", "-A", "--quiet", MOD, "daemon", ...args]]
    : [binary, ["daemon", ...args]];
  const child = spawn(cmd, argv, {
    env,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  let text = "";
  const reading = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  return { child, log: () => text, done: Promise.all([child.status, reading]).then(([s]) => s) };
}

/** Resolves once `path` accepts a connection; fails if the daemon exits or takes too long. */
export async function waitForSocket(
  path: string,
  d: DaemonProc,
  timeoutMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  d.done.then(() => exited = true);
  while (Date.now() < deadline) {
    if (exited) throw new Error(`daemon exited before listening:\n${d.log()}`);
    try {
      (await Deno.connect({ transport: "unix", path })).close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  throw new Error(`daemon did not listen on ${path} in ${timeoutMs} ms:\n${d.log()}`);
}

/** Stops the daemon with SIGTERM (SIGKILL after `graceMs`); resolves with its exit status. */
export async function stopDaemon(d: DaemonProc, graceMs = 20_000): Promise<Deno.CommandStatus> {
  try {
    d.child.kill("SIGTERM");
  } catch { /* already gone */ }
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<boolean>((r) => timer = setTimeout(() => r(true), graceMs));
  const hung = await Promise.race([d.done.then(() => false), late]);
  clearTimeout(timer);
  if (hung) {
    try {
      d.child.kill("SIGKILL");
    } catch { /* gone meanwhile */ }
  }
  return await d.done;
}

/** `berth daemon` on these paths (and config file, if any). */
export function daemonAt(
  root: string,
  state: string,
  address: string,
  config?: string,
  binary?: string,
): DaemonProc {
  const extra = config === undefined ? [] : ["--config", config];
  return spawnDaemon(["--root", root, "--state", state, "--address", address, ...extra], binary);
}

/**
 * Writes `config` to `dir`/config.toml and starts a daemon with it, its root
 * and state under `dir` and its socket at `address`.
 */
export async function spawnDaemonWithConfig(
  dir: string,
  config: string,
  address: string,
  binary?: string,
): Promise<DaemonProc> {
  await Deno.writeTextFile(`${dir}/config.toml`, config);
  return daemonAt(`${dir}/root`, `${dir}/state`, address, `${dir}/config.toml`, binary);
}

/**
 * A daemon on paths under `dir` (root, state, sockets, an empty version 2
 * config so that no system config is read), with `root` overriding where
 * its root is. Resolves once both sockets answer.
 */
export async function startDaemonIn(
  dir: string,
  root = `${dir}/root`,
): Promise<{ daemon: DaemonProc; address: string; ttrpc: string }> {
  const address = `${dir}/state/berth.sock`;
  await Deno.writeTextFile(`${dir}/config.toml`, "version = 2\n");
  const daemon = daemonAt(root, `${dir}/state`, address, `${dir}/config.toml`);
  try {
    await waitForSocket(`${address}.ttrpc`, daemon);
    await waitForSocket(address, daemon);
  } catch (err) {
    await stopDaemon(daemon);
    throw err;
  }
  return { daemon, address, ttrpc: `${address}.ttrpc` };
}
