/**
 * Warm shims: for berth's own shim the daemon does what the shim's `start`
 * action would do in its own process (src/shim/start.ts), and the serving
 * shim is a spare it started ahead of need (`<shim> shim spare`, owned by
 * the daemon over stdin/stdout: see runOwnedSpare in src/shim/spare.ts).
 * A container start then costs no shim process start at all, where
 * containerd starts two (its shim's `start`, which starts the server).
 *
 * One idle spare is kept per shim binary once that binary has been used;
 * {@link WarmShims.close} stops the idle ones (adopted ones are shims and
 * outlive the daemon). A spare whose daemon dies sees the end of its stdin
 * and exits.
 *
 * @module
 */

import { log } from "../log/mod.ts";
import type { ShimFlags } from "../shim/flags.ts";
import type { Adoption } from "../shim/spare.ts";
import { spawn } from "../spawn/mod.ts";
import { shimEnv, type ShimEnvironment } from "./binary.ts";

/** How long a spare may take to boot and serve once adopted; then it is killed. */
const ADOPT_TIMEOUT_MS = 20_000;
/** How long an idle spare may take to exit once its stdin is closed. */
const STOP_TIMEOUT_MS = 5_000;

/** The basename of berth's shim, as containerd's naming rule makes it of io.containerd.berth.v2. */
const BERTH_SHIM = "containerd-shim-berth-v2";

/** True when `binary` is berth's own shim (it serves as an owned spare). */
export function isBerthShim(binary: string): boolean {
  return binary.slice(binary.lastIndexOf("/") + 1) === BERTH_SHIM;
}

interface Spare {
  binary: string;
  child: Deno.ChildProcess;
  status: Promise<Deno.CommandStatus>;
  exited: boolean;
}

/** The daemon's spares of its own shim; see the module doc. */
export class WarmShims {
  #daemon: ShimEnvironment;
  #env: Record<string, string>;
  #idle = new Map<string, Spare>();
  #closed = false;

  /** Spares for the daemon `env` describes. */
  constructor(env: ShimEnvironment) {
    this.#daemon = env;
    this.#env = shimEnv(env);
  }

  #spawn(binary: string): Spare {
    // Detached: an adopted spare is a shim, which outlives the daemon. Its
    // argv names the daemon, as every shim's does, for tools that look.
    const child = spawn(binary, ["shim", "-address", this.#daemon.address, "spare"], {
      cwd: "/",
      env: this.#env,
      detached: true,
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    });
    child.unref();
    const spare: Spare = { binary, child, status: child.status, exited: false };
    spare.status.then(() => {
      spare.exited = true;
      if (this.#idle.get(binary) === spare) this.#idle.delete(binary);
    });
    return spare;
  }

  /**
   * Makes a spare of `binary` serve as the shim `flags` describe (its
   * socket set); resolves with the shim's pid once it listens there. Takes
   * the idle spare, or starts one when there is none.
   */
  async launch(binary: string, flags: ShimFlags): Promise<number> {
    let spare = this.#idle.get(binary);
    this.#idle.delete(binary);
    if (spare === undefined || spare.exited) spare = this.#spawn(binary);
    const { child } = spare;
    const msg: Adoption = { flags, env: this.#env };
    const reader = child.stdout.getReader();
    let timer: ReturnType<typeof setTimeout> | undefined;
    try {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(JSON.stringify(msg) + "\n"));
      await writer.close();
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${ADOPT_TIMEOUT_MS} ms`)),
          ADOPT_TIMEOUT_MS,
        );
      });
      let answer = "";
      while (!answer.includes("\n")) {
        const { value, done } = await Promise.race([reader.read(), timeout]);
        if (done) break;
        answer += new TextDecoder().decode(value);
      }
      if (answer.split("\n")[0] !== "ok") {
        const status = await Promise.race([spare.status, timeout]);
        throw new Error(`it exited (status ${status.code}) before serving`);
      }
      return child.pid;
    } catch (err) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone already */ }
      throw new Error(`warm shim ${binary} for ${flags.id}: ${(err as Error).message}`);
    } finally {
      clearTimeout(timer);
      await reader.cancel().catch(() => {});
    }
  }

  /** Starts an idle spare of `binary` unless one is there (or the daemon is closing). */
  refill(binary: string): void {
    if (this.#closed || this.#idle.has(binary)) return;
    try {
      this.#idle.set(binary, this.#spawn(binary));
    } catch (err) {
      log.warn("cannot start a warm shim", { binary, error: String(err) });
    }
  }

  /** Stops the idle spares (end of stdin, then SIGKILL if one lingers) and starts no more. */
  async close(): Promise<void> {
    this.#closed = true;
    const idle = [...this.#idle.values()];
    this.#idle.clear();
    await Promise.all(idle.map(async (s) => {
      await s.child.stdin.close().catch(() => {});
      let timer: ReturnType<typeof setTimeout> | undefined;
      const late = new Promise<boolean>((r) => timer = setTimeout(() => r(true), STOP_TIMEOUT_MS));
      const hung = await Promise.race([s.status.then(() => false), late]);
      clearTimeout(timer);
      if (hung) {
        try {
          s.child.kill("SIGKILL");
        } catch { /* gone meanwhile */ }
        await s.status;
      }
      await s.child.stdout.cancel().catch(() => {});
    }));
  }
}
