/**
 * A process's stdio without a terminal, as containerd names it: fifo paths
 * (the usual case), "" for none, `file:///path` (append both streams to a
 * file) or `binary:///path?k=v` (a logging program that reads the streams).
 *
 * The runtime is started with Deno pipes that the container inherits; this
 * module copies them to and from the destinations. Copies are plain awaited
 * writes of every chunk, so nothing is dropped: output waits for the reader
 * rather than being lost. Fifos are raw nonblocking fds (ffi openFifo) whose
 * waits go to ffi's poller: a Deno.FsFile read of an idle fifo would hold one
 * of Deno's few (~32) blocking threads for as long as it waits, and a group
 * shim with many containers would run out of them.
 * @module
 */

import { BerthError, Code, invalidArgument } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { spawn } from "../spawn/mod.ts";
import { close as closeFd, mkfifo, openFifo, readFd, writeFd } from "../../ffi/mod.ts";

/** The stdio a process was asked to have (paths or URIs, "" for none). */
export interface StdioPaths {
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** What each of the runtime's stdio should be: a pipe berth copies, or nothing. */
export interface RuntimeStdio {
  stdin: "piped" | "null";
  stdout: "piped" | "null";
  stderr: "piped" | "null";
}

/** The shim's side of a process's stdio (no terminal). */
export interface ProcessIO {
  /** How to start the runtime so the container inherits the right pipes. */
  readonly runtimeStdio: RuntimeStdio;
  /** Starts copying between the runtime child's pipes and the destinations. */
  attach(child: Deno.ChildProcess): void;
  /** Resolves when stdout and stderr reached EOF (every writer in the container closed them). */
  readonly drained: Promise<void>;
  /** CloseIO: no more stdin from the client; the container sees EOF once what was sent is copied. */
  closeStdin(): void;
  /** Releases everything (fifos, files, the logging program). */
  close(): Promise<void>;
}

/** Where one output stream goes. */
interface Sink {
  write(chunk: Uint8Array): Promise<void>;
  close(): void;
}

function closeQuietly(f: { close(): void } | null | undefined): void {
  try {
    f?.close();
  } catch {
    // already closed
  }
}

/** A fifo held read-write: it is a writer, and also keeps a reader so a client that goes away makes writes wait, not fail. */
function fifoSink(path: string): Sink {
  const fd = openFifo(path, "readwrite");
  let open = true;
  return {
    write: (chunk) => writeFd(fd, chunk),
    close() {
      // Once only: a raw fd number closed twice may already name another file.
      if (!open) return;
      open = false;
      closeFd(fd);
    },
  };
}

/** A regular file (or a fifo of berth's own, Deno-opened). */
function fileSink(file: Deno.FsFile): Sink {
  return {
    async write(chunk) {
      for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
    },
    close: () => closeQuietly(file),
  };
}

/** One sink written by `users` copies: closed when the last of them closes it (file:// takes both streams). */
function shared(sink: Sink, users: number): Sink {
  return {
    write: (chunk) => sink.write(chunk),
    close() {
      if (--users === 0) sink.close();
    },
  };
}

/** Size of a read of a container's output while it is quiet: what each waiting read holds. */
const QUIET_READ = 4 << 10;
/** Size of a read once one came back full (more output is waiting). */
const BUSY_READ = 64 << 10;

/**
 * The size of the next read of a process's output after one of `last`
 * bytes into a buffer of `asked`: large after a full read, small again after
 * a short one. Deno's own reads allocate 64 KiB each, and an idle container
 * keeps one read waiting on stdout and one on stderr (and berth's on stdin)
 * for as long as it runs: 160 KiB per container at fixed sizes, most of a
 * group shim's growth with its containers.
 */
export function nextReadSize(asked: number, last: number): number {
  return last === asked ? BUSY_READ : QUIET_READ;
}

/**
 * Copies a stream into a sink until EOF, then closes the sink, so the reader
 * sees the end as soon as the container's writers are gone (as with
 * containerd's shims). Write errors end the copying, but the stream is
 * still drained so the container never blocks on a full pipe. Each read
 * gets a fresh buffer (a sink may keep the chunk), sized by nextReadSize.
 */
async function copyOut(
  stream: ReadableStream<Uint8Array>,
  dest: Sink | null,
  what: string,
): Promise<void> {
  const reader = stream.getReader({ mode: "byob" });
  let failed = dest === null;
  let size = QUIET_READ;
  try {
    for (;;) {
      const { value, done } = await reader.read(new Uint8Array(size));
      if (done || value === undefined) {
        dest?.close();
        return;
      }
      size = nextReadSize(size, value.length);
      if (failed) continue;
      try {
        await dest!.write(value);
      } catch (err) {
        // Keep reading so the container never blocks on a full pipe.
        failed = true;
        log.warn(`copying ${what} failed; discarding the rest`, { error: err });
      }
    }
  } finally {
    reader.releaseLock();
  }
}

async function isFifo(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFifo === true;
  } catch {
    return false;
  }
}

async function openOut(path: string): Promise<Sink | null> {
  if (path === "") return null;
  if (await isFifo(path)) return fifoSink(path);
  return fileSink(await Deno.open(path, { write: true, append: true }));
}

/** The shim's ends of a stdin fifo: one to read, and one held open for writing until CloseIO. */
interface StdinFifo {
  fd: number;
  /** While open, the fifo never reports end of file, whatever the client does (containerd's shims do the same). */
  hold: number;
}

function openStdin(path: string): StdinFifo {
  const hold = openFifo(path, "readwrite");
  try {
    return { fd: openFifo(path, "read"), hold };
  } catch (err) {
    closeFd(hold);
    throw err;
  }
}

function closeFdQuietly(fd: number): void {
  try {
    closeFd(fd);
  } catch {
    // already closed
  }
}

class PipeIO implements ProcessIO {
  readonly runtimeStdio: RuntimeStdio;
  drained: Promise<void> = Promise.resolve();
  private stdin: StdinFifo | null;
  private readonly sinks: Sink[];
  private logger: Deno.ChildProcess | null = null;

  constructor(
    private readonly stdout: Sink | null,
    private readonly stderr: Sink | null,
    stdin: StdinFifo | null,
    opts: { logger?: Deno.ChildProcess; wantStdout: boolean; wantStderr: boolean },
  ) {
    this.stdin = stdin;
    this.logger = opts.logger ?? null;
    this.runtimeStdio = {
      stdin: stdin ? "piped" : "null",
      stdout: opts.wantStdout ? "piped" : "null",
      stderr: opts.wantStderr ? "piped" : "null",
    };
    this.sinks = [stdout, stderr].filter((x): x is Sink => x !== null);
  }

  attach(child: Deno.ChildProcess): void {
    const copies: Promise<void>[] = [];
    if (this.runtimeStdio.stdout === "piped") {
      copies.push(copyOut(child.stdout, this.stdout, "stdout"));
    }
    if (this.runtimeStdio.stderr === "piped") {
      copies.push(copyOut(child.stderr, this.stderr, "stderr"));
    }
    this.drained = Promise.all(copies).then(() => {});
    if (this.stdin) this.copyIn(this.stdin.fd, child.stdin);
  }

  private async copyIn(fd: number, dest: WritableStream<Uint8Array>): Promise<void> {
    const writer = dest.getWriter();
    // Reused (each chunk written is a copy), sized like copyOut's reads: a
    // container whose stdin is quiet keeps a small one waiting.
    let buf = new Uint8Array(QUIET_READ);
    try {
      for (;;) {
        const n = await readFd(fd, buf);
        if (n === 0) break; // every writer closed: the client's, and ours after CloseIO
        await writer.write(buf.slice(0, n));
        const size = nextReadSize(buf.length, n);
        if (size !== buf.length) buf = new Uint8Array(size);
      }
    } catch (err) {
      // EBADF when the process's IO is closed while waiting; a container that closed its stdin.
      log.debug("stdin copy ended", { error: err });
    } finally {
      await writer.close().catch(() => {});
      if (this.stdin?.fd === fd) {
        closeFdQuietly(fd);
        this.stdin.fd = -1;
      }
    }
  }

  closeStdin(): void {
    if (this.stdin && this.stdin.hold >= 0) {
      closeFdQuietly(this.stdin.hold);
      this.stdin.hold = -1;
    }
  }

  async close(): Promise<void> {
    this.closeStdin();
    if (this.stdin && this.stdin.fd >= 0) {
      closeFdQuietly(this.stdin.fd);
      this.stdin.fd = -1;
    }
    // Copies close their sinks at EOF; these closes are for copies that never ended (idempotent).
    for (const c of this.sinks) closeQuietly(c);
    this.sinks.length = 0;
    if (this.logger) {
      const logger = this.logger;
      this.logger = null;
      await stopLogger(logger);
    }
  }
}

/** How long a logging program gets to finish after its input ended (containerd gives ~12 s). */
const LOGGER_STOP_MS = 12_000;

async function stopLogger(logger: Deno.ChildProcess): Promise<void> {
  const timer = setTimeout(() => {
    try {
      logger.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
  }, LOGGER_STOP_MS);
  try {
    logger.kill("SIGTERM");
  } catch {
    // exited already
  }
  await logger.status;
  clearTimeout(timer);
}

/**
 * Starts a `binary://` logging program with containerd's protocol: fd 3 is
 * the container's stdout, fd 4 its stderr, fd 5 a pipe the program closes
 * (or writes to) when ready; env holds only CONTAINER_ID and
 * CONTAINER_NAMESPACE. Deno cannot hand extra fds to a child, so fds 3-5 are
 * fifos in a private temp dir that /bin/sh opens before it execs the program.
 */
async function startLogger(
  uri: URL,
  id: string,
  namespace: string,
): Promise<{ child: Deno.ChildProcess; out: Sink; err: Sink }> {
  const args: string[] = [];
  const seen = new Set<string>();
  for (const [k, v] of uri.searchParams) {
    if (seen.has(k)) continue; // the first value of a key, as Go's url.Values[k][0]
    seen.add(k);
    args.push(k);
    if (v !== "") args.push(v);
  }
  const dir = await Deno.makeTempDir({ prefix: "berth-logio-" });
  try {
    for (const name of ["out", "err", "ready"]) mkfifo(`${dir}/${name}`, 0o600);
    const script = 'exec 3<"$1" 4<"$2" 5>"$3"; shift 3; exec "$@"';
    const child = spawn("/bin/sh", [
      "-c",
      script,
      "sh",
      `${dir}/out`,
      `${dir}/err`,
      `${dir}/ready`,
      decodeURIComponent(uri.pathname),
      ...args,
    ], {
      clearEnv: true,
      env: { CONTAINER_ID: id, CONTAINER_NAMESPACE: namespace },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    // Our ends of its fds 3 and 4 exist before sh opens them, so sh never waits for us.
    const out = fifoSink(`${dir}/out`);
    const err = fifoSink(`${dir}/err`);
    // sh opens fd 5 (for writing) only once the others are open; a blocking
    // open here waits for it, briefly.
    const result = await Promise.race([
      Deno.open(`${dir}/ready`, { read: true }),
      child.status.then((s) => s),
    ]);
    if (!(result instanceof Deno.FsFile)) {
      out.close();
      err.close();
      throw new BerthError(
        Code.Internal,
        `logging binary ${uri.pathname} exited with status ${result.code} before it was ready`,
      );
    }
    // Ready when the program writes a byte or closes fd 5 (EOF).
    await Promise.race([result.read(new Uint8Array(1)), child.status]);
    closeQuietly(result);
    return { child, out, err };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Prepares the shim's side of a process's stdio (no terminal); fifos are
 * opened here, before the runtime runs, so a bad path fails the request.
 */
export async function openProcessIO(
  paths: StdioPaths,
  id: string,
  namespace: string,
): Promise<ProcessIO> {
  let stdin: StdinFifo | null = null;
  if (paths.stdin !== "") {
    try {
      stdin = openStdin(paths.stdin);
    } catch (err) {
      throw new BerthError(
        Code.InvalidArgument,
        `open stdin fifo ${paths.stdin}: ${(err as Error).message}`,
      );
    }
  }
  const scheme = /^([a-z]+):\/\//.exec(paths.stdout)?.[1] ?? "";
  const opened: Sink[] = [];
  try {
    if (scheme === "binary") {
      const logger = await startLogger(new URL(paths.stdout), id, namespace);
      return new PipeIO(logger.out, logger.err, stdin, {
        logger: logger.child,
        wantStdout: true,
        wantStderr: true,
      });
    }
    if (scheme === "file") {
      const path = decodeURIComponent(new URL(paths.stdout).pathname);
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
      const file = fileSink(
        await Deno.open(path, { write: true, append: true, create: true, mode: 0o644 }),
      );
      // One file, opened for appending, takes both streams; closed after both.
      const both = shared(file, 2);
      return new PipeIO(both, both, stdin, { wantStdout: true, wantStderr: true });
    }
    if (scheme !== "" && scheme !== "fifo") throw invalidArgument(`unknown STDIO scheme ${scheme}`);
    const out = await openOut(paths.stdout.replace(/^fifo:\/\//, ""));
    if (out) opened.push(out);
    const err = await openOut(paths.stderr.replace(/^fifo:\/\//, ""));
    return new PipeIO(out, err, stdin, {
      wantStdout: paths.stdout !== "",
      wantStderr: paths.stderr !== "",
    });
  } catch (err) {
    for (const o of opened) closeQuietly(o);
    if (stdin) {
      closeFdQuietly(stdin.fd);
      closeFdQuietly(stdin.hold);
    }
    throw err;
  }
}
