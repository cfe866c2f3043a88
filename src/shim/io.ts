/**
 * A process's stdio without a terminal, as containerd names it: fifo paths
 * (the usual case), "" for none, `file:///path` (append both streams to a
 * file) or `binary:///path?k=v` (a logging program that reads the streams).
 *
 * The runtime is started with Deno pipes that the container inherits; this
 * module copies them to and from the destinations. Copies are plain awaited
 * writes of every chunk, so nothing is dropped: output waits for the reader
 * rather than being lost.
 * @module
 */

import { BerthError, Code, invalidArgument } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { spawn } from "../spawn/mod.ts";
import { mkfifo } from "../../ffi/mod.ts";

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

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  for (let off = 0; off < chunk.length;) off += await file.write(chunk.subarray(off));
}

/** Copies a stream into a file until EOF; write errors end the copy but the stream is still drained. */
async function copyOut(stream: ReadableStream<Uint8Array>, dest: Deno.FsFile | null, what: string): Promise<void> {
  const reader = stream.getReader();
  let failed = dest === null;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      if (failed) continue;
      try {
        await writeAll(dest!, value);
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

/** Opens a fifo without blocking on a missing peer: both ends at once; the extra end is returned too. */
async function openFifo(path: string, mode: "read" | "write"): Promise<{ main: Deno.FsFile; peer: Deno.FsFile }> {
  const [r, w] = await Promise.all([Deno.open(path, { read: true }), Deno.open(path, { write: true })]);
  return mode === "read" ? { main: r, peer: w } : { main: w, peer: r };
}

async function isFifo(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFifo === true;
  } catch {
    return false;
  }
}

function closeQuietly(f: { close(): void } | null | undefined): void {
  try {
    f?.close();
  } catch {
    // already closed
  }
}

/** A destination for one output stream: the file to write, and what to close afterwards. */
interface OutDest {
  file: Deno.FsFile | null;
  extra: Deno.FsFile[];
}

async function openOut(path: string): Promise<OutDest> {
  if (path === "") return { file: null, extra: [] };
  if (await isFifo(path)) {
    // Hold a read end too (as containerd's shim does) so a client that goes
    // away makes writes wait instead of failing with EPIPE.
    const { main, peer } = await openFifo(path, "write");
    return { file: main, extra: [peer] };
  }
  return { file: await Deno.open(path, { write: true, append: true }), extra: [] };
}

class PipeIO implements ProcessIO {
  readonly runtimeStdio: RuntimeStdio;
  drained: Promise<void> = Promise.resolve();
  private stdinFile: Deno.FsFile | null = null;
  /** The shim's own write end of the stdin fifo: while open, the fifo never reports EOF. */
  private stdinHold: Deno.FsFile | null = null;
  private closers: { close(): void }[] = [];
  private logger: Deno.ChildProcess | null = null;

  constructor(
    private readonly stdout: OutDest,
    private readonly stderr: OutDest,
    stdinPaths: { file: Deno.FsFile; hold: Deno.FsFile } | null,
    opts: { logger?: Deno.ChildProcess; wantStdout: boolean; wantStderr: boolean },
  ) {
    if (stdinPaths) {
      this.stdinFile = stdinPaths.file;
      this.stdinHold = stdinPaths.hold;
    }
    this.logger = opts.logger ?? null;
    this.runtimeStdio = {
      stdin: stdinPaths ? "piped" : "null",
      stdout: opts.wantStdout ? "piped" : "null",
      stderr: opts.wantStderr ? "piped" : "null",
    };
    for (const d of [stdout, stderr]) {
      if (d.file) this.closers.push(d.file);
      this.closers.push(...d.extra);
    }
  }

  attach(child: Deno.ChildProcess): void {
    const copies: Promise<void>[] = [];
    if (this.runtimeStdio.stdout === "piped") copies.push(copyOut(child.stdout, this.stdout.file, "stdout"));
    if (this.runtimeStdio.stderr === "piped") copies.push(copyOut(child.stderr, this.stderr.file, "stderr"));
    this.drained = Promise.all(copies).then(() => {});
    if (this.stdinFile) this.copyIn(this.stdinFile, child.stdin);
  }

  private async copyIn(src: Deno.FsFile, dest: WritableStream<Uint8Array>): Promise<void> {
    const writer = dest.getWriter();
    const buf = new Uint8Array(32 * 1024);
    try {
      for (;;) {
        const n = await src.read(buf);
        if (n === null) break;
        await writer.write(buf.slice(0, n));
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted)) {
        log.debug("stdin copy ended", { error: err });
      }
    } finally {
      await writer.close().catch(() => {});
      closeQuietly(src);
      if (this.stdinFile === src) this.stdinFile = null;
    }
  }

  closeStdin(): void {
    closeQuietly(this.stdinHold);
    this.stdinHold = null;
  }

  async close(): Promise<void> {
    this.closeStdin();
    closeQuietly(this.stdinFile);
    for (const c of this.closers) closeQuietly(c);
    this.closers = [];
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
async function startLogger(uri: URL, id: string, namespace: string): Promise<{ child: Deno.ChildProcess; out: Deno.FsFile; err: Deno.FsFile }> {
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
    const child = spawn("/bin/sh", ["-c", script, "sh", `${dir}/out`, `${dir}/err`, `${dir}/ready`, decodeURIComponent(uri.pathname), ...args], {
      clearEnv: true,
      env: { CONTAINER_ID: id, CONTAINER_NAMESPACE: namespace },
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    const opened = Promise.all([
      Deno.open(`${dir}/out`, { write: true }),
      Deno.open(`${dir}/err`, { write: true }),
      Deno.open(`${dir}/ready`, { read: true }),
    ]);
    const result = await Promise.race([opened, child.status.then((s) => s)]);
    if (!Array.isArray(result)) {
      throw new BerthError(Code.Internal, `logging binary ${uri.pathname} exited with status ${result.code} before it was ready`);
    }
    const [out, err, ready] = result;
    // Ready when the program writes a byte or closes fd 5 (EOF).
    await Promise.race([ready.read(new Uint8Array(1)), child.status]);
    closeQuietly(ready);
    return { child, out, err };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Prepares the shim's side of a process's stdio (no terminal); fifos are
 * opened here, before the runtime runs, so a bad path fails the request.
 */
export async function openProcessIO(paths: StdioPaths, id: string, namespace: string): Promise<ProcessIO> {
  let stdinPaths: { file: Deno.FsFile; hold: Deno.FsFile } | null = null;
  if (paths.stdin !== "") {
    const { main, peer } = await openFifo(paths.stdin, "read").catch((err) => {
      throw new BerthError(Code.InvalidArgument, `open stdin fifo ${paths.stdin}: ${err.message}`);
    });
    stdinPaths = { file: main, hold: peer };
  }
  const scheme = /^([a-z]+):\/\//.exec(paths.stdout)?.[1] ?? "";
  try {
    if (scheme === "binary") {
      const logger = await startLogger(new URL(paths.stdout), id, namespace);
      return new PipeIO({ file: logger.out, extra: [] }, { file: logger.err, extra: [] }, stdinPaths, {
        logger: logger.child,
        wantStdout: true,
        wantStderr: true,
      });
    }
    if (scheme === "file") {
      const path = decodeURIComponent(new URL(paths.stdout).pathname);
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
      const file = await Deno.open(path, { write: true, append: true, create: true, mode: 0o644 });
      // One file, opened for appending, takes both streams (closing it twice is harmless).
      return new PipeIO({ file, extra: [] }, { file, extra: [] }, stdinPaths, { wantStdout: true, wantStderr: true });
    }
    if (scheme !== "" && scheme !== "fifo") throw invalidArgument(`unknown STDIO scheme ${scheme}`);
    const out = await openOut(paths.stdout.replace(/^fifo:\/\//, ""));
    const err = await openOut(paths.stderr.replace(/^fifo:\/\//, ""));
    return new PipeIO(out, err, stdinPaths, { wantStdout: paths.stdout !== "", wantStderr: paths.stderr !== "" });
  } catch (err) {
    closeQuietly(stdinPaths?.file);
    closeQuietly(stdinPaths?.hold);
    throw err;
  }
}
