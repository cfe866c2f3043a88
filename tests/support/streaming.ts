/**
 * A {@link StreamingRuntime} for tests: exec and attach run local
 * busybox-static processes (a pty through ffi for tty sessions), and port
 * forwarding connects to 127.0.0.1:<port>. It records what it saw (resizes,
 * commands, ports) and stops every process it started.
 * @module
 */

import { close, openPty, readFd, setNonblocking, setWinsize, writeFd } from "../../ffi/mod.ts";
import { spawn } from "../../src/spawn/mod.ts";
import type {
  ForwardConn,
  StreamingRuntime,
  StreamIO,
  TerminalSize,
} from "../../src/streaming/mod.ts";

/** What the test runtime saw. */
export interface Seen {
  execs: { containerId: string; cmd: string[]; tty: boolean }[];
  resizes: TerminalSize[];
  forwards: { sandbox: string; port: number }[];
}

/** Runs commands locally; `attachCmd` is what an attach connects to. */
export class LocalRuntime implements StreamingRuntime {
  readonly seen: Seen = { execs: [], resizes: [], forwards: [] };
  #children = new Set<Deno.ChildProcess>();
  #attachCmd: string[];

  constructor(attachCmd: string[]) {
    this.#attachCmd = attachCmd;
  }

  async exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }> {
    this.seen.execs.push({ containerId, cmd, tty: io.tty });
    return { exitCode: await this.#run(cmd, io) };
  }

  async attach(_containerId: string, io: StreamIO): Promise<void> {
    await this.#run(this.#attachCmd, io);
  }

  async portForward(sandbox: string, port: number, conn: ForwardConn): Promise<void> {
    this.seen.forwards.push({ sandbox, port });
    const tcp = await Deno.connect({ hostname: "127.0.0.1", port });
    await Promise.all([
      conn.readable.pipeTo(tcp.writable, { preventClose: true }).then(() => tcp.closeWrite())
        .catch(() => {}),
      tcp.readable.pipeTo(conn.writable).catch(() => {}),
    ]);
  }

  async #run(cmd: string[], io: StreamIO): Promise<number> {
    if (io.tty) return await this.#runTty(cmd, io);
    const child = spawn("busybox", cmd, {
      stdin: io.stdin ? "piped" : "null",
      stdout: io.stdout ? "piped" : "null",
      stderr: io.stderr ? "piped" : "null",
    });
    this.#children.add(child);
    try {
      const copies: Promise<unknown>[] = [];
      if (io.stdin) copies.push(io.stdin.pipeTo(child.stdin).catch(() => {}));
      if (io.stdout) copies.push(child.stdout.pipeTo(io.stdout).catch(() => {}));
      if (io.stderr) copies.push(child.stderr.pipeTo(io.stderr).catch(() => {}));
      const status = await child.status;
      // stdin may still be open (the client never closed it): output is what matters.
      await Promise.all(copies.slice(io.stdin ? 1 : 0));
      return status.code;
    } finally {
      this.#children.delete(child);
    }
  }

  /** A pty session: the command runs as a session leader whose terminal is the pty's slave. */
  async #runTty(cmd: string[], io: StreamIO): Promise<number> {
    const pty = openPty();
    setNonblocking(pty.master);
    const child = spawn("busybox", [
      "setsid",
      "sh",
      "-c",
      `exec "$@" <${pty.path} >${pty.path} 2>&1`,
      "sh",
      ...cmd,
    ], { stdin: "null", stdout: "null", stderr: "null" });
    this.#children.add(child);
    let masterOpen = true;
    const resizes = (async () => {
      for await (const size of io.resize ?? []) {
        this.seen.resizes.push(size);
        if (masterOpen) setWinsize(pty.master, { rows: size.height, cols: size.width });
      }
    })();
    const input = (async () => {
      if (!io.stdin) return;
      for await (const chunk of io.stdin) {
        if (!masterOpen) break;
        await writeFd(pty.master, chunk).catch(() => {});
      }
    })();
    const output = (async () => {
      const w = io.stdout?.getWriter();
      const buf = new Uint8Array(32 * 1024);
      try {
        for (;;) {
          const n = await readFd(pty.master, buf).catch(() => 0); // EIO: every slave closed
          if (n === 0) break;
          await w?.write(buf.slice(0, n));
        }
      } finally {
        await w?.close().catch(() => {});
      }
    })();
    try {
      const status = await child.status;
      close(pty.slave);
      await output;
      return status.code;
    } finally {
      masterOpen = false;
      close(pty.master);
      this.#children.delete(child);
      void resizes.catch(() => {});
      void input.catch(() => {});
    }
  }

  /** Kills what is still running (by pid) and waits for it. */
  async stop(): Promise<void> {
    for (const c of this.#children) {
      try {
        c.kill("SIGKILL");
      } catch { /* exited */ }
      await c.status;
    }
  }
}

/** A TCP echo server on 127.0.0.1:0 that closes its side when the peer half-closes. */
export function startEchoServer(): { port: number; close: () => Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const loop = (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      void conn.readable.pipeTo(conn.writable).catch(() => {}).finally(() => conns.delete(conn));
    }
  })().catch(() => {});
  return {
    port: listener.addr.port,
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await loop;
    },
  };
}

/**
 * The local port a `crictl port-forward` child listens on, from the
 * "Forwarding from 127.0.0.1:<port> -> <remote>" line it prints once it
 * listens; the rest of its stdout is drained.
 */
export async function forwardedPort(child: Deno.ChildProcess): Promise<number> {
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let seen = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`crictl port-forward ended: ${seen}`);
    seen += value;
    const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(seen);
    if (m) {
      void (async () => {
        while (!(await reader.read()).done) { /* drain */ }
      })().catch(() => {});
      return Number(m[1]);
    }
  }
}
