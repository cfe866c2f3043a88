/**
 * The `start` action: find or start the serving shim for this container's
 * group and print its address. containerd runs it with CombinedOutput, so
 * the serve process it starts gets none of this process's stdout/stderr
 * (containerd would wait for their EOF), and runs in its own session so it
 * outlives both this process and containerd.
 *
 * This is on the path of every `ctr run`: it imports no protobuf and no
 * ttrpc, and does one process start at most: none when the group's shim is
 * already up, none when a warm spare shim can be adopted (spare.ts, opt-in).
 * It is the one way a berth shim starts, whoever asks: containerd, or
 * berth's daemon for the first container of a shim it shares.
 * @module
 */

import { BerthError, Code, invalidArgument } from "../errdefs/mod.ts";
import { shimGroupAnnotation } from "../labels/mod.ts";
import { selfCommand, spawn } from "../spawn/mod.ts";
import { formatShimFlags, type ShimFlags } from "./flags.ts";
import { canConnect, lockGroup, socketDir, socketPath } from "./socket.ts";
import { adoptSpare, sparesEnabled } from "./spare.ts";

/** How long a new serve process may take to accept connections. */
const SERVE_READY_TIMEOUT_MS = 20_000;
const POLL_MS = 4;

/** The group a bundle's container belongs to: its group annotation, else its own id. */
export function groupOf(
  config: { annotations?: Record<string, string> } | null,
  id: string,
): string {
  return shimGroupAnnotation(config?.annotations) ?? id;
}

/** Writes the bundle's `address` file atomically (what containerd reads back after a restart). */
export async function writeAddress(bundle: string, address: string): Promise<void> {
  const tmp = `${bundle}/.address`;
  await Deno.writeTextFile(tmp, address, { mode: 0o666 });
  await Deno.rename(tmp, `${bundle}/address`);
}

async function readStdin(): Promise<Uint8Array> {
  // containerd writes the runtime options Any here (only ShimCgroup matters
  // to start; Create gets the options again). A person running start by
  // hand has a terminal there: nothing to read.
  if (Deno.stdin.isTerminal()) return new Uint8Array();
  try {
    return new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
  } catch {
    return new Uint8Array(); // no stdin at all
  }
}

/** Protobuf fields of one message, by number: a few lines instead of loading a protobuf library on the hot path. */
function wireFields(buf: Uint8Array): Map<number, Uint8Array> {
  const out = new Map<number, Uint8Array>();
  let i = 0;
  const varint = () => {
    let v = 0;
    for (let shift = 0; i < buf.length; shift += 7) {
      const b = buf[i++];
      v += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    return v;
  };
  while (i < buf.length) {
    const key = varint();
    const [field, type] = [Math.floor(key / 8), key & 7];
    if (type === 0) varint();
    else if (type === 2) {
      const n = varint();
      out.set(field, buf.subarray(i, i + n));
      i += n;
    } else if (type === 1) i += 8;
    else if (type === 5) i += 4;
    else break;
  }
  return out;
}

/** The ShimCgroup of the runtime options Any containerd passes to start ("" when none). */
export function shimCgroupOf(any: Uint8Array): string {
  const fields = wireFields(any);
  const typeUrl = new TextDecoder().decode(fields.get(1) ?? new Uint8Array());
  if (!typeUrl.endsWith("containerd.runc.v1.Options")) return "";
  return new TextDecoder().decode(
    wireFields(fields.get(2) ?? new Uint8Array()).get(3) ?? new Uint8Array(),
  );
}

/** Moves `pid` into cgroup `path` (every v1 hierarchy that has it, or the unified one), as containerd's runc shim does. */
async function joinCgroup(pid: number, path: string): Promise<void> {
  const root = "/sys/fs/cgroup";
  const unified = await Deno.stat(`${root}/cgroup.controllers`).then(() => true, () => false);
  const dirs = unified
    ? [root]
    : [...Deno.readDirSync(root)].filter((e) => e.isDirectory).map((e) => `${root}/${e.name}`);
  let joined = 0;
  for (const d of dirs) {
    try {
      await Deno.writeTextFile(`${d}${path}/cgroup.procs`, String(pid));
      joined++;
    } catch {
      // this hierarchy has no such group
    }
  }
  if (joined === 0) throw new BerthError(Code.NotFound, `failed to load cgroup ${path}`);
}

/** Gives the shim containerd's OOM score plus one, so the kernel picks the shim before containerd. */
async function adjustOomScore(pid: number, parentPid: number): Promise<void> {
  const parent = Number((await Deno.readTextFile(`/proc/${parentPid}/oom_score_adj`)).trim());
  await Deno.writeTextFile(`/proc/${pid}/oom_score_adj`, String(Math.min(parent + 1, 1000)));
}

/**
 * Runs `start`: returns the address (`unix://...`) of the shim serving
 * this container's group, starting one when none is up.
 */
export async function startShim(flags: ShimFlags): Promise<string> {
  if (!flags.namespace) throw invalidArgument("shim namespace cannot be empty");
  if (!flags.id) throw invalidArgument("shim id cannot be empty");
  const bundle = flags.bundle || Deno.cwd();
  const stdinDone = readStdin();
  let config = null;
  try {
    config = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
  } catch (err) {
    throw new BerthError(
      Code.InvalidArgument,
      `read ${bundle}/config.json: ${(err as Error).message}`,
    );
  }
  const dir = socketDir();
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = await socketPath(dir, flags.address, flags.namespace, groupOf(config, flags.id));
  const address = `unix://${path}`;
  const unlock = await lockGroup(path);
  try {
    if (!(await canConnect(path))) {
      await Deno.remove(path).catch(() => {}); // a stale socket of a shim that died
      const serving = { ...flags, bundle, socket: path };
      let pid = sparesEnabled() ? await adoptSpare(dir, path, serving) : 0;
      if (!pid) pid = await startServe(flags, bundle, path);
      try {
        const cgroup = shimCgroupOf(await stdinDone);
        if (cgroup) await joinCgroup(pid, cgroup);
      } catch (err) {
        // The shim must not outlive a start that failed.
        try {
          Deno.kill(pid, "SIGKILL");
        } catch {
          // gone already
        }
        await Deno.remove(path).catch(() => {});
        throw err;
      }
      // best effort (it fails in user namespaces)
      await adjustOomScore(pid, Deno.ppid).catch(() => {});
    }
    await writeAddress(bundle, address);
  } finally {
    unlock();
  }
  await stdinDone;
  return address;
}

/** Starts the serve process detached, waits until it accepts connections on `path`, returns its pid. */
async function startServe(flags: ShimFlags, bundle: string, path: string): Promise<number> {
  const self = selfCommand([
    "shim",
    ...formatShimFlags({ ...flags, bundle, socket: path }),
    "serve",
  ]);
  // stderr is a fresh pipe, not ours: read only if the serve process dies before it is ready.
  const child = spawn(self.cmd, self.args, {
    cwd: bundle,
    detached: true,
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  let exited: Deno.CommandStatus | null = null;
  child.status.then((s) => exited = s);
  const deadline = Date.now() + SERVE_READY_TIMEOUT_MS;
  while (!exited) {
    if (await canConnect(path)) {
      child.unref();
      await child.stderr.cancel().catch(() => {});
      return child.pid;
    }
    if (Date.now() > deadline) {
      try {
        child.kill("SIGKILL");
      } catch {
        // gone meanwhile
      }
      await child.status;
      throw new BerthError(
        Code.DeadlineExceeded,
        `shim serve process did not listen on ${path} within ${SERVE_READY_TIMEOUT_MS} ms`,
      );
    }
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
  const err = new TextDecoder().decode(await new Response(child.stderr).arrayBuffer()).trim();
  const status: Deno.CommandStatus = exited;
  throw new BerthError(
    Code.Internal,
    `shim serve process exited (status ${status.code}) before listening: ${err || "no output"}`,
  );
}
