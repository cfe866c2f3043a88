/**
 * A process's terminal: runc creates the pty inside the container and sends
 * its master over a unix "console socket" (SCM_RIGHTS); the shim copies
 * between the master and the client's fifos, resizes it on ResizePty
 * (TIOCSWINSZ), and on stdin's end closes it as containerd does (the
 * container's session sees a hangup).
 *
 * The master is a raw fd (Deno cannot wrap one): it is made nonblocking and
 * read and written through ffi/, which waits for readiness off the event
 * loop. A closed fd number is never used again: the copies stop before the
 * fd is closed.
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import type { StdioPaths } from "./io.ts";
import {
  accept,
  close,
  isErrno,
  listenUnix,
  openFifo,
  readFd,
  recvFds,
  setNonblocking,
  setWinsize,
  writeFd,
} from "../../ffi/mod.ts";

/** A listening console socket for one runc call. */
export interface ConsoleSocket {
  readonly path: string;
  /** Accepts runc's connection and returns the pty master it sent. */
  receiveMaster(timeoutMs: number): Promise<number>;
  close(): void;
}

/** Makes a console socket in a private temporary directory. */
export async function openConsoleSocket(): Promise<ConsoleSocket> {
  const dir = await Deno.makeTempDir({ prefix: "berth-pty-" });
  const path = `${dir}/pty.sock`;
  let fd: number;
  try {
    fd = listenUnix(path, { backlog: 4 });
  } catch (err) {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw err;
  }
  let closed = false;
  return {
    path,
    async receiveMaster(timeoutMs: number): Promise<number> {
      const signal = AbortSignal.timeout(timeoutMs);
      let conn: number;
      try {
        conn = await accept(fd, { signal });
      } catch (err) {
        if (signal.aborted) {
          throw new BerthError(Code.DeadlineExceeded, "no terminal received from the runtime");
        }
        throw err;
      }
      try {
        const { fds } = await recvFds(conn, new Uint8Array(4096), { signal });
        if (fds.length === 0) {
          throw new BerthError(Code.Internal, "console socket: the runtime sent no terminal");
        }
        for (const extra of fds.slice(1)) close(extra);
        return fds[0];
      } finally {
        close(conn);
      }
    },
    close() {
      if (closed) return;
      closed = true;
      close(fd);
      Deno.removeSync(dir, { recursive: true });
    },
  };
}

/** The shim's side of a process's terminal. */
export interface ConsoleIO {
  /** Resolves when the terminal's output reached its end (every slave closed). */
  readonly drained: Promise<void>;
  resize(width: number, height: number): void;
  closeStdin(): void;
  close(): Promise<void>;
}

function closeQuietly(fd: number): void {
  try {
    close(fd);
  } catch {
    // already closed
  }
}

/** Raw fds of the client's fifos (see io.ts for why not Deno.FsFile). */
interface ConsoleFifos {
  /** stdin to read, and a writing end held until CloseIO (no end of file before it). */
  stdin: { fd: number; hold: number } | null;
  /** stdout, held read-write: a client that goes away makes writes wait, not fail. */
  stdout: number;
}

class Console implements ConsoleIO {
  drained: Promise<void>;
  private masterOpen = true;
  private inflightWrites = 0;
  private fds: number[] = [];

  constructor(private readonly master: number, private readonly fifos: ConsoleFifos) {
    setNonblocking(master);
    if (fifos.stdin) this.fds.push(fifos.stdin.fd);
    this.drained = this.copyOut(fifos.stdout);
    if (fifos.stdin) this.copyIn(fifos.stdin.fd);
  }

  private async copyOut(dest: number): Promise<void> {
    const buf = new Uint8Array(32 * 1024);
    let failed = dest < 0;
    while (this.masterOpen) {
      let n: number;
      try {
        n = await readFd(this.master, buf);
      } catch (err) {
        if (this.masterOpen && !isErrno(err, "EIO")) {
          log.warn("reading the terminal failed", { error: err });
        }
        break; // EIO: every slave closed, the terminal's end of output
      }
      if (n === 0) break;
      if (failed) continue;
      try {
        await writeFd(dest, buf.subarray(0, n));
      } catch (err) {
        failed = true;
        log.warn("copying terminal output failed; discarding the rest", { error: err });
      }
    }
    // The terminal's output ended: the client sees the end now (as with containerd's shims).
    if (dest >= 0) closeQuietly(dest);
  }

  private async copyIn(src: number): Promise<void> {
    const buf = new Uint8Array(32 * 1024);
    try {
      for (;;) {
        const n = await readFd(src, buf);
        if (n === 0 || !this.masterOpen) break;
        this.inflightWrites++;
        try {
          await writeFd(this.master, buf.subarray(0, n));
        } finally {
          this.inflightWrites--;
        }
      }
    } catch (err) {
      log.debug("terminal input copy ended", { error: err });
    }
    // The client's input ended (after CloseIO): hang the terminal up, as containerd does.
    if (this.masterOpen) await this.closeMaster();
  }

  resize(width: number, height: number): void {
    if (!this.masterOpen) return;
    setWinsize(this.master, { rows: height, cols: width });
  }

  closeStdin(): void {
    const s = this.fifos.stdin;
    if (s && s.hold >= 0) {
      closeQuietly(s.hold);
      s.hold = -1;
    }
  }

  private async closeMaster(): Promise<void> {
    if (!this.masterOpen) return;
    this.masterOpen = false;
    // Let a write that is under way finish (bounded: a container that never
    // reads its terminal must not hold the shim); close() then fails any
    // wait still registered on the fd.
    for (let i = 0; this.inflightWrites > 0 && i < 200; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    close(this.master);
  }

  async close(): Promise<void> {
    this.closeStdin();
    await this.closeMaster();
    for (const fd of this.fds) closeQuietly(fd);
    this.fds = [];
  }
}

/**
 * Starts copying between a terminal master and the process's fifos
 * (stdout carries the terminal's output; stderr is unused with a terminal).
 */
export function copyConsole(
  master: number,
  stdio: StdioPaths,
  _id: string,
  _namespace: string,
): Promise<ConsoleIO> {
  const opened: number[] = [];
  try {
    if (/^[a-z]+:\/\//.test(stdio.stdout) && !stdio.stdout.startsWith("fifo://")) {
      throw new BerthError(
        Code.Unimplemented,
        `terminal output to ${stdio.stdout.split(":")[0]} URIs is not supported`,
      );
    }
    let stdin: ConsoleFifos["stdin"] = null;
    if (stdio.stdin) {
      const hold = openFifo(stdio.stdin, "readwrite");
      opened.push(hold);
      const fd = openFifo(stdio.stdin, "read");
      opened.push(fd);
      stdin = { fd, hold };
    }
    const stdout = stdio.stdout
      ? openFifo(stdio.stdout.replace(/^fifo:\/\//, ""), "readwrite")
      : -1;
    return Promise.resolve(new Console(master, { stdin, stdout }));
  } catch (err) {
    for (const fd of opened) closeQuietly(fd);
    closeQuietly(master);
    return Promise.reject(err);
  }
}
