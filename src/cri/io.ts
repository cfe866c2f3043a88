/**
 * A CRI container's stdio as the daemon holds it: output fifos copied
 * into the container's log (and handed to whoever attaches meanwhile),
 * and, for containers created with `stdin`, a stdin fifo the daemon keeps
 * open for writing so that attached clients can feed it.
 * @module
 */

import { close, mkfifo, openFifo, writeFd } from "../../ffi/mod.ts";
import { ContainerLog, copyFifo } from "./logs.ts";

/** Receives a copy of a container's output while attached. */
export type OutputTap = (stream: "stdout" | "stderr", chunk: Uint8Array) => void;

/** The paths a task is created with ("" for a stream it does not have). */
export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
}

/** What {@link ContainerIO.open} needs. */
export interface ContainerIOOptions {
  /** Directory of the fifos (made here; kept across a daemon restart). */
  dir: string;
  /** The log file ("" : output is read and dropped). */
  logPath: string;
  tty: boolean;
  stdin: boolean;
}

/** One container's stdio; see the module doc. */
export class ContainerIO {
  readonly #taps = new Set<OutputTap>();
  readonly #stop = new AbortController();
  #stdinFd: number | undefined;
  #done!: Promise<void>;

  private constructor(readonly paths: StdioPaths, readonly log: ContainerLog) {}

  /** Makes (or reuses) the fifos and starts copying the output. */
  static async open(o: ContainerIOOptions): Promise<ContainerIO> {
    await Deno.mkdir(o.dir, { recursive: true, mode: 0o700 });
    const paths: StdioPaths = {
      stdin: o.stdin ? `${o.dir}/stdin` : "",
      stdout: `${o.dir}/stdout`,
      stderr: o.tty ? "" : `${o.dir}/stderr`,
    };
    let log: ContainerLog;
    if (o.logPath !== "") {
      await Deno.mkdir(o.logPath.slice(0, o.logPath.lastIndexOf("/")), { recursive: true });
      log = await ContainerLog.open(o.logPath);
    } else {
      log = await ContainerLog.open("/dev/null");
    }
    const io = new ContainerIO(paths, log);
    if (paths.stdin) {
      try {
        mkfifo(paths.stdin, 0o600);
      } catch { /* made by a daemon before this one */ }
      io.#stdinFd = openFifo(paths.stdin, "readwrite");
    }
    const tap = (stream: "stdout" | "stderr") => (chunk: Uint8Array) => {
      for (const t of io.#taps) t(stream, chunk);
    };
    const copies = [copyFifo(paths.stdout, "stdout", log, io.#stop.signal, tap("stdout"))];
    if (paths.stderr) {
      copies.push(copyFifo(paths.stderr, "stderr", log, io.#stop.signal, tap("stderr")));
    }
    io.#done = Promise.allSettled(copies).then(() => log.close());
    return io;
  }

  /** Adds a tap on the output; returns its removal. */
  attach(tap: OutputTap): () => void {
    this.#taps.add(tap);
    return () => this.#taps.delete(tap);
  }

  /** True when the container was created with stdin. */
  get hasStdin(): boolean {
    return this.#stdinFd !== undefined;
  }

  /** Writes to the container's stdin (dropped when it has none). */
  async writeStdin(chunk: Uint8Array): Promise<void> {
    if (this.#stdinFd !== undefined) await writeFd(this.#stdinFd, chunk);
  }

  /** Closes the daemon's end of the stdin fifo: the container reads end of file. */
  closeStdin(): void {
    if (this.#stdinFd === undefined) return;
    close(this.#stdinFd);
    this.#stdinFd = undefined;
  }

  /**
   * Settles once the output copies have ended: after {@link stop}, with
   * what was buffered drained and handed to the taps.
   */
  get closed(): Promise<void> {
    return this.#done;
  }

  /** Stops the copies (draining what is buffered) and closes the stdin end; the fifos stay. */
  async stop(): Promise<void> {
    this.#stop.abort();
    if (this.#stdinFd !== undefined) {
      close(this.#stdinFd);
      this.#stdinFd = undefined;
    }
    // The taps stay through the drain: an attach gets the output written just before the exit.
    await this.#done;
    this.#taps.clear();
  }
}
