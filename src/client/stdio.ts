/**
 * A task's stdio as the client sees it: fifos the client creates and the
 * shim opens, copied to and from this process's stdio; the local terminal
 * in raw mode for -t (restored on every exit path) with its size sent to
 * the task at start and on SIGWINCH; and, without -t, signals forwarded to
 * the task (ctr's --sig-proxy).
 * @module
 */

import { makeRaw, mkfifo, restoreTermios, signalNumber, type Termios } from "../../ffi/mod.ts";
import { getWinsize } from "../../ffi/mod.ts";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Tasks } from "../gen/containerd/services/tasks/v1/tasks_pb.ts";
import type { Connection } from "./connection.ts";

/** The paths a task is created with (empty strings: no stream). */
export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** Fifos made for one process, and the copying between them and this process. */
export class FifoIO {
  readonly paths: StdioPaths;
  readonly #dir: string;
  readonly #copies: Promise<void>[] = [];
  #stdinFile: Deno.FsFile | undefined;
  #removeDir: boolean;
  #started = false;
  /** Set once every output copy ended. */
  #copied = false;

  private constructor(dir: string, paths: StdioPaths, removeDir: boolean) {
    this.#dir = dir;
    this.paths = paths;
    this.#removeDir = removeDir;
  }

  /** Makes stdin/stdout(/stderr) fifos for `id` under `fifoDir` (stderr shares the tty with -t). */
  static async create(
    fifoDir: string,
    id: string,
    terminal: boolean,
    keep: boolean,
  ): Promise<FifoIO> {
    await Deno.mkdir(fifoDir, { recursive: true, mode: 0o700 });
    const dir = await Deno.makeTempDir({ dir: fifoDir, prefix: `${id}-` });
    const p = (s: string) => `${dir}/${id}-${s}`;
    const paths: StdioPaths = {
      stdin: p("stdin"),
      stdout: p("stdout"),
      stderr: terminal ? "" : p("stderr"),
      terminal,
    };
    for (const f of [paths.stdin, paths.stdout, paths.stderr]) if (f) mkfifo(f, 0o600);
    return new FifoIO(dir, paths, !keep);
  }

  /** The fifos of a process that exists already (attach): used, never removed. */
  static existing(paths: StdioPaths): Promise<FifoIO> {
    return Promise.resolve(new FifoIO("", paths, false));
  }

  /**
   * Starts copying: our stdin into the stdin fifo (closing it and telling
   * the task at EOF), the output fifos to our stdout/stderr. Opening a fifo
   * waits for the shim to open its end, so this runs in the background.
   */
  start(conn: Connection, containerId: string, execId: string, withStdin: boolean): void {
    // The shim opens its ends while the task is created, so this must run first; once only.
    if (this.#started) return;
    this.#started = true;
    const out = async (path: string, dest: WritableStream<Uint8Array>) => {
      const f = await Deno.open(path, { read: true });
      await f.readable.pipeTo(dest, { preventClose: true }).catch(() => {});
    };
    this.#copies.push(out(this.paths.stdout, Deno.stdout.writable));
    if (this.paths.stderr) this.#copies.push(out(this.paths.stderr, Deno.stderr.writable));
    Promise.allSettled(this.#copies).then(() => this.#copied = true);
    if (withStdin && this.paths.stdin) {
      (async () => {
        const f = await Deno.open(this.paths.stdin, { write: true });
        this.#stdinFile = f;
        try {
          const reader = Deno.stdin.readable.getReader();
          for (;;) {
            const { value, done } = await reader.read();
            if (done) break;
            let off = 0;
            while (off < value.length) off += await f.write(value.subarray(off));
          }
        } catch { /* the task went away */ }
        try {
          f.close();
        } catch { /* closed already */ }
        await conn.service(Tasks).closeIO({ containerId, execId, stdin: true }).catch(() => {});
      })();
    }
  }

  /** Waits (at most `ms`) for the output copies to drain after the process exited. */
  async drain(ms = 2000): Promise<void> {
    // Done already (the usual case): no timer, whose first use costs a client ~10 ms.
    if (this.#copied) return;
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      Promise.all(this.#copies),
      new Promise<void>((r) => timer = setTimeout(r, ms)),
    ]);
    clearTimeout(timer);
  }

  /** Removes the fifos (unless kept for a detached task). */
  async close(): Promise<void> {
    try {
      this.#stdinFile?.close();
    } catch { /* closed */ }
    if (this.#removeDir) await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Refuses `what` (-t, or a container made with it) when this process's
 * stdin is no terminal: the task's console would be wired to a pipe or
 * /dev/null, the shell in it would print its banner and terminal queries
 * there and exit on end of input. `instead` says what works without one.
 */
export function needTerminal(what: string, instead = `leave out ${what}`): void {
  if (Deno.stdin.isTerminal()) return;
  throw new BerthError(
    Code.InvalidArgument,
    `${what} needs a terminal, and stdin is not one: run it from a terminal, or ${instead}`,
  );
}

/** Puts the local terminal in raw mode; the returned function restores it (idempotent). */
export function rawTerminal(): () => void {
  if (!Deno.stdin.isTerminal()) return () => {};
  const fd = 0;
  const saved: Termios = makeRaw(fd);
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    try {
      restoreTermios(fd, saved);
    } catch { /* terminal gone */ }
  };
  // Deno.exit skips finally blocks of pending work; the unload event still runs.
  globalThis.addEventListener("unload", restore);
  return restore;
}

/** The local terminal's size, or undefined when stdout and stdin are no terminals. */
export function terminalSize(): { rows: number; cols: number } | undefined {
  for (const fd of [1, 0]) {
    try {
      const s = getWinsize(fd);
      if (s.rows > 0 || s.cols > 0) return { rows: s.rows, cols: s.cols };
    } catch { /* not a terminal */ }
  }
  return undefined;
}

/** Sends the local terminal's size to the process now and on every SIGWINCH; returns a stop function. */
export async function forwardResize(
  conn: Connection,
  containerId: string,
  execId: string,
): Promise<() => void> {
  const send = async () => {
    let size;
    try {
      size = getWinsize(Deno.stdout.isTerminal() ? 1 : 0);
    } catch {
      return;
    }
    await conn.service(Tasks).resizePty({
      containerId,
      execId,
      width: size.cols,
      height: size.rows,
    }).catch(() => {});
  };
  await send();
  const onWinch = () => void send();
  Deno.addSignalListener("SIGWINCH", onWinch);
  return () => Deno.removeSignalListener("SIGWINCH", onWinch);
}

/** Signals a non-tty run forwards to its task (what ctr's sig-proxy catches, minus job control). */
const PROXIED: Deno.Signal[] = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2"];

/** Forwards signals this process gets to the task; returns a stop function. */
export function forwardSignals(conn: Connection, containerId: string, execId: string): () => void {
  const handlers = PROXIED.map((sig) => {
    const h = () => {
      conn.service(Tasks).kill({ containerId, execId, signal: signalNumber(sig) }).catch(() => {});
    };
    Deno.addSignalListener(sig, h);
    return [sig, h] as const;
  });
  return () => {
    for (const [sig, h] of handlers) Deno.removeSignalListener(sig, h);
  };
}
