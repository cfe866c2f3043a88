/**
 * A warm spare shim (opt-in: BERTH_SHIM_SPARE=1): a serve process started
 * ahead of need, so that `start` for a new group hands it the group instead
 * of booting a new Deno process (the slowest step of a container start).
 *
 * - A running shim keeps one spare listening at `<socket dir>/spare`
 *   (started once a container of it runs, off the path of its own start).
 * - `start` adopts it under the spare's lock: it renames the spare's socket
 *   to the group's socket path (the listening socket keeps working under
 *   its new name), connects, and sends the spare its identity (containerd's
 *   flags and the environment it needs) as one JSON line; "ok" means the
 *   spare now serves the Task API there.
 * - A spare that no live shim has shared its directory with for a while
 *   (BERTH_SHIM_SPARE_LINGER_MS, 10 s), or that waited too long, removes its socket (under the same lock, so never while being
 *   adopted) and exits.
 *
 * Imports stay tiny: `start` uses this module.
 * @module
 */

import { log } from "../log/mod.ts";
import { selfCommand, spawn } from "../spawn/mod.ts";
import type { ShimFlags } from "./flags.ts";
import { canConnect, lockGroup, removeSocketFile } from "./socket.ts";
import { TRACING_ENV_KEYS } from "../tracing/settings.ts";

/**
 * The spare's lock (`<dir>/spare.lock`) stays with its directory once made:
 * starts, spares and retirements all take it, and removing it while others
 * wait let one of them hold a replaced file (the stray spare.lock seen under
 * 20 parallel starts).
 */
const SPARE_LOCK = { keep: true };

/** The spare's socket in a socket directory. */
export function sparePath(dir: string): string {
  return `${dir}/spare`;
}

/** What an adopting `start` tells the spare. */
export interface Adoption {
  flags: ShimFlags;
  /** Environment the shim needs from containerd (PATH, TTRPC_ADDRESS). */
  env: Record<string, string>;
}

/**
 * True when spares are asked for (env BERTH_SHIM_SPARE=1 in containerd's
 * environment). Off by default: a spare is an idle Deno process (~35 MB)
 * while any shim runs, and an adopted one's argv names only the socket
 * directory, which tools that find shims by containerd's address miss.
 */
export function sparesEnabled(): boolean {
  return Deno.env.get("BERTH_SHIM_SPARE") === "1";
}

/** How long an adoption may take; a spare that misses it is killed, so a group never has two shims. */
const ADOPT_TIMEOUT_MS = 10_000;

/**
 * Hands the group socket `path` to the spare in `dir`, if one is ready.
 * Returns the spare's pid, or 0 (leaving nothing behind) when there is none
 * or it fails.
 */
export async function adoptSpare(dir: string, path: string, flags: ShimFlags): Promise<number> {
  const spare = sparePath(dir);
  if (!(await Deno.lstat(spare).then(() => true, () => false))) return 0; // none waiting: no lock file either
  const unlock = await lockGroup(spare, SPARE_LOCK);
  try {
    try {
      await Deno.rename(spare, path);
    } catch {
      return 0; // taken by another start, or retired
    }

    let conn: Deno.UnixConn | null = null;
    let sparePid = 0;
    try {
      conn = await Deno.connect({ transport: "unix", path });
      // The spare names itself first, so that a failed adoption can end it.
      const hello = await readLine(conn, ADOPT_TIMEOUT_MS);
      sparePid = Number(/^pid (\d+)$/.exec(hello)?.[1] ?? 0);
      if (!sparePid) throw new Error(`unexpected greeting "${hello}"`);
      const env: Record<string, string> = {};
      const keys = ["PATH", "TTRPC_ADDRESS", "BERTH_SHIM_SOCKET_DIR", "BERTH_SHIM_SPARE"];
      for (const k of [...keys, ...TRACING_ENV_KEYS]) {
        const v = Deno.env.get(k);
        if (v !== undefined) env[k] = v;
      }
      const msg: Adoption = { flags, env };
      await writeAll(conn, new TextEncoder().encode(JSON.stringify(msg) + "\n"));
      const reply = await readLine(conn, ADOPT_TIMEOUT_MS);
      if (reply === "ok") return sparePid;
      throw new Error(reply || "no answer");
    } catch (err) {
      // A dead, slow or refusing spare: end it, and the caller starts a shim of its own.
      if (sparePid) {
        try {
          Deno.kill(sparePid, "SIGKILL");
        } catch {
          // already gone
        }
      }
      await Deno.remove(path).catch(() => {});
      Deno.stderr.writeSync(
        new TextEncoder().encode(`berth shim: spare not adopted: ${(err as Error).message}\n`),
      );
      return 0;
    } finally {
      conn?.close();
    }
  } finally {
    unlock();
  }
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
}

/**
 * Reads one line (without its newline) from `src` within `timeoutMs` (none
 * when omitted); what came before EOF or the timeout when no newline did.
 */
async function readLine(
  src: { read(p: Uint8Array): Promise<number | null> },
  timeoutMs?: number,
): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 * 1024);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = timeoutMs === undefined
    ? new Promise<null>(() => {})
    : new Promise<null>((r) => (timer = setTimeout(() => r(null), timeoutMs)));
  try {
    for (;;) {
      const n = await Promise.race([src.read(buf), timeout]);
      if (n === null) break;
      chunks.push(buf.slice(0, n));
      if (buf.subarray(0, n).includes(10)) break;
    }
  } finally {
    clearTimeout(timer);
  }
  const text = new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c])));
  const nl = text.indexOf("\n");
  return nl >= 0 ? text.slice(0, nl) : text;
}

/** A marker that a spare is being started, so that shims starting together start one. */
function spawningMarker(dir: string): string {
  return `${dir}/spare.starting`;
}

const MARKER_STALE_MS = 20_000;

/** Starts a spare in `dir` unless one is ready or being started. Never throws. */
export async function ensureSpare(dir: string): Promise<void> {
  try {
    if (await canConnect(sparePath(dir))) return;
    const marker = spawningMarker(dir);
    try {
      await Deno.writeTextFile(marker, String(Date.now()), { createNew: true });
    } catch {
      const since = Number(await Deno.readTextFile(marker).catch(() => "0"));
      if (Date.now() - since < MARKER_STALE_MS) return;
      await Deno.writeTextFile(marker, String(Date.now()));
    }
    const self = selfCommand(["shim", "-socket", sparePath(dir), "spare"]);
    const child = spawn(self.cmd, self.args, {
      cwd: "/",
      detached: true,
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    child.unref();
    child.status.catch(() => {});
  } catch (err) {
    log.warn("could not start a spare shim", { error: err });
  }
}

/**
 * What a serving shim calls once a container of it runs (off the path of
 * that container's start): makes sure a spare waits in its socket
 * directory for the next start, when spares are asked for.
 */
export function spareStarter(socket: string): (() => void) | undefined {
  if (!sparesEnabled()) return undefined;
  return () => ensureSpare(socket.slice(0, socket.lastIndexOf("/")));
}

/** How often an idle spare looks for live shims, and how long it waits at most. */
const CHECK_MS = 500;
const MAX_IDLE_MS = 10 * 60_000;

/** How long a spare stays with no live shim beside it (env BERTH_SHIM_SPARE_LINGER_MS; default 10 s). */
function lingerMs(): number {
  const v = Number(Deno.env.get("BERTH_SHIM_SPARE_LINGER_MS"));
  return Number.isFinite(v) && v > 0 ? v : 10_000;
}

/** True when some shim other than the spare answers in `dir`. */
async function anyShimAlive(dir: string): Promise<boolean> {
  for (const e of Deno.readDirSync(dir)) {
    if (!/^[0-9a-f]{64}$/.test(e.name)) continue;
    if (await canConnect(`${dir}/${e.name}`)) return true;
  }
  return false;
}

/**
 * The spare action: listens at the spare path and waits to be adopted;
 * then becomes the shim described by the adoption (see {@link adoptSpare}).
 * Returns the process exit status.
 */
export async function runSpare(path: string): Promise<number> {
  if (path === "") throw new Error("spare needs -socket (the spare's socket path)");
  const dir = path.slice(0, path.lastIndexOf("/"));
  // Load the serving code before offering itself: adoption must be quick.
  const { serveShim } = await import("./serve.ts");
  const unlock = await lockGroup(path, SPARE_LOCK);
  let listener: Deno.UnixListener;
  let ino: number | null;
  try {
    if (await canConnect(path)) return 0; // another spare is ready
    await Deno.remove(path).catch(() => {});
    listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    ino = (await Deno.stat(path)).ino;
  } finally {
    unlock();
    await Deno.remove(spawningMarker(dir)).catch(() => {});
  }
  // Accept until a connection brings an adoption; probes (canConnect) just close.
  let adoption: { conn: Deno.UnixConn; msg: Adoption } | null = null;
  const accepting = (async () => {
    for (;;) {
      let conn: Deno.UnixConn;
      try {
        conn = await listener.accept();
      } catch {
        return; // retired: the listener was closed
      }
      let line = "";
      try {
        await writeAll(conn, new TextEncoder().encode(`pid ${Deno.pid}\n`));
        line = await readLine(conn, ADOPT_TIMEOUT_MS);
      } catch {
        // a probe that did not stay
      }
      try {
        const msg = JSON.parse(line) as Adoption;
        if (msg && typeof msg === "object" && msg.flags) {
          adoption = { conn, msg };
          return;
        }
      } catch {
        // not an adoption
      }
      conn.close();
    }
  })();
  const since = Date.now();
  let lonelySince = Date.now();
  let missingSince: number | null = null;
  while (!adoption) {
    await Promise.race([accepting, new Promise((r) => setTimeout(r, CHECK_MS))]);
    if (adoption) break;
    if (await anyShimAlive(dir)) lonelySince = Date.now();
    if (Date.now() - lonelySince < lingerMs() && Date.now() - since < MAX_IDLE_MS) continue;
    // Retire, unless a start has renamed the socket (it is adopting this spare).
    if ((await Deno.stat(path).catch(() => null))?.ino !== ino) {
      // An adopter connects within its timeout; a socket gone for longer was
      // removed by someone else, and nobody can reach this spare any more.
      missingSince ??= Date.now();
      if (Date.now() - missingSince < 2 * ADOPT_TIMEOUT_MS) continue;
      log.warn("spare shim: its socket was removed; exiting", { path });
      listener.close();
      await accepting;
      return 0;
    }
    missingSince = null;
    const release = await lockGroup(path, SPARE_LOCK);
    try {
      if (!adoption && (await Deno.stat(path).catch(() => null))?.ino === ino) {
        removeSocketFile(path);
        listener.close();
        await accepting;
        return 0;
      }
    } finally {
      release();
    }
  }
  const { conn, msg } = adoption as { conn: Deno.UnixConn; msg: Adoption };
  for (const [k, v] of Object.entries(msg.env)) Deno.env.set(k, v);
  if (msg.flags.bundle) Deno.chdir(msg.flags.bundle);
  return await serveShim(msg.flags, {
    listener,
    started: spareStarter(msg.flags.socket),
    ready: async () => {
      await writeAll(conn, new TextEncoder().encode("ok\n")).catch(() => {});
      conn.close();
    },
  });
}
