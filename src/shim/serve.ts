/**
 * The long-lived shim process (`serve`, started detached by `start`):
 * becomes the child subreaper of the containers it starts, serves the Task
 * API (as containerd.task.v2.Task and containerd.task.v3.Task) on its unix
 * socket, and publishes events. SIGTERM/SIGINT stop it: it stops serving,
 * kills and cleans up what is left, and exits. SIGUSR1 writes a dump of its
 * state to the log. SIGPIPE never kills it (a reader of the log fifo may go).
 * @module
 */

import { close as closeFd, openFifo, setChildSubreaper, writeFd } from "../../ffi/mod.ts";
import { log, setLogLevel, setLogSink } from "../log/mod.ts";
import { Server } from "../ttrpc/mod.ts";
import { Task as TaskV2 } from "../gen/containerd/task/v2/shim_pb.ts";
import { Task as TaskV3 } from "../gen/containerd/task/v3/shim_pb.ts";
import type { ShimFlags } from "./flags.ts";
import { Publisher } from "./publisher.ts";
import { Reaper } from "./reaper.ts";
import { TaskService } from "./service.ts";
import { lockGroup, removeGroupFiles } from "./socket.ts";
import { flushTracing, makeTracer, settingsFromEnv, setTracer } from "../tracing/mod.ts";
import { VERSION } from "../version.ts";

/** service.name of a shim's spans unless OTEL_SERVICE_NAME says otherwise. */
const SHIM_SERVICE = "containerd-shim-berth-v2";

/**
 * Installs a tracer when the environment asks for one (the daemon that
 * started this shim hands its settings on as OpenTelemetry variables); a
 * bad setting is logged and tracing stays off, the shim still serves.
 */
function setUpTracing(): void {
  try {
    const s = settingsFromEnv((k) => Deno.env.get(k), SHIM_SERVICE);
    if (s !== undefined) setTracer(makeTracer(s, VERSION));
  } catch (err) {
    log.error("tracing is off", { error: (err as Error).message });
  }
}

/** How long stopping may take before the shim exits regardless. */
const STOP_DEADLINE_MS = 15_000;

/** Log lines waiting for a slow log reader; beyond this many bytes, lines are dropped. */
const LOG_BACKLOG_BYTES = 1 << 20;

/** A log destination: where lines go, and how to let go of it. */
interface LogFifo {
  sink: (line: string) => void;
  close: () => void;
}

/**
 * Opens the bundle's `log` fifo (containerd reads it and copies it into its
 * own log) when there is one. Writes are queued so a slow reader never
 * blocks the shim. The fifo is a raw nonblocking fd opened read-write: the
 * open never waits for a reader, and neither it nor the writes take one of
 * Deno's blocking threads (on the path of every container start). While
 * nobody reads (containerd restarting), lines wait in the pipe.
 */
function logToFifo(bundle: string): LogFifo | null {
  const path = `${bundle}/log`;
  let fd: number;
  try {
    if (!Deno.statSync(path).isFifo) return null;
    fd = openFifo(path, "readwrite");
  } catch {
    return null;
  }
  const enc = new TextEncoder();
  let queue: Uint8Array[] = [];
  let queued = 0;
  let writing = false;
  let closed = false;
  const pump = async () => {
    writing = true;
    while (queue.length > 0 && !closed) {
      const batch = queue;
      queue = [];
      queued = 0;
      for (const chunk of batch) {
        try {
          await writeFd(fd, chunk);
        } catch {
          // closed meanwhile: the line is lost, not the shim
        }
      }
    }
    writing = false;
  };
  const sink = (line: string) => {
    if (closed || queued > LOG_BACKLOG_BYTES) return;
    const bytes = enc.encode(line);
    queue.push(bytes);
    queued += bytes.length;
    if (!writing) pump();
  };
  const close = () => {
    if (closed) return;
    closed = true;
    try {
      closeFd(fd);
    } catch {
      // already closed
    }
  };
  return { sink, close };
}

/**
 * Where the shim lives: the bundle it works in (its cwd) and whose `log`
 * fifo carries its log, at first the bundle of the container it was started
 * for. A group shim outlives that container, and containerd removes a
 * bundle once its container is deleted: Deno then starts no process at all
 * (not even runc by absolute path), and that log fifo has no reader any
 * more. So when the home bundle is released, the shim moves into the bundle
 * of a container it still serves (containerd reads every bundle's log
 * fifo), or to "/" when none is left.
 */
class Home {
  private fifo: LogFifo | null = null;

  /** Opens the log fifo of `bundle`, the first home (once, at start). */
  openLog(bundle: string): void {
    this.use(logToFifo(bundle));
  }

  private use(next: LogFifo | null): void {
    if (!next) return;
    setLogSink(next.sink);
    this.fifo?.close();
    this.fifo = next;
  }

  /** `bundle` goes away: when it is home (or home is gone already), move to one of `serving`. */
  leave(bundle: string, serving: string[]): void {
    // Compared as directories, not names: containerd's path and the cwd may spell it differently.
    const here = statOrNull(".");
    const there = statOrNull(bundle);
    if (here && (!there || here.dev !== there.dev || here.ino !== there.ino)) return;
    let next = "/";
    for (const b of serving) {
      try {
        Deno.chdir(b);
        next = b;
        break;
      } catch {
        // that bundle is going too: try the next
      }
    }
    if (next === "/") Deno.chdir("/");
    log.debug("shim moved to another bundle", { from: bundle, to: next });
    // With no bundle left the old log stays: it may still carry the last lines.
    if (next === "/") return;
    this.use(logToFifo(next));
  }

  /**
   * A container of `bundle` was created here: a shim with no home (its
   * containers all gone, as a shim shared by a daemon's containers can be
   * while it waits for the next) moves into it and logs to its fifo.
   */
  enter(bundle: string): void {
    if (Deno.cwd() !== "/") return;
    try {
      Deno.chdir(bundle);
    } catch {
      return; // going already
    }
    log.debug("shim moved into a new bundle", { to: bundle });
    this.use(logToFifo(bundle));
  }

  /** Closes the log (the shim is exiting). */
  close(): void {
    this.fifo?.close();
    this.fifo = null;
  }
}

function statOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.statSync(path);
  } catch {
    return null;
  }
}

/**
 * How a serve process is set up: an adopted spare brings the listener it
 * made before it knew its identity (none: listen on the socket of the
 * flags) and whom to tell once it serves; `started` is told after each
 * container's init started (the spare logic uses it to keep a spare ready).
 */
export interface ServeOptions {
  listener?: Deno.UnixListener;
  ready?: () => Promise<void>;
  started?: () => void;
}

/** Runs the serve action until the shim is told to stop; returns the exit status. */
export async function serveShim(flags: ShimFlags, opts: ServeOptions = {}): Promise<number> {
  if (flags.debug) setLogLevel("debug");
  const home = new Home();
  home.openLog(flags.bundle || Deno.cwd());
  if (!flags.socket) {
    log.error("serve needs -socket");
    return 2;
  }
  setChildSubreaper(true);
  setUpTracing();
  const reaper = new Reaper();
  reaper.start();
  const publisher = new Publisher({
    ttrpcAddress: flags.ttrpcAddress,
    address: flags.address,
    publishBinary: flags.publishBinary,
    namespace: flags.namespace,
  });
  let stop!: () => void;
  const stopped = new Promise<void>((r) => (stop = r));
  const service = new TaskService({
    namespace: flags.namespace,
    reaper,
    publisher,
    debug: flags.debug,
    shutdown: () => stop(),
    released: (bundle, serving) => home.leave(bundle, serving),
    created: (bundle) => home.enter(bundle),
    started: opts.started,
  });
  // Before the socket is served: a SIGTERM from then on is a stop, never the default death.
  const onStop = () => stop();
  const onDump = () =>
    log.info(`=== shim state dump ===\n${service.dump()}\n${reaper.dump()}\n=== end of dump ===`);
  const onPipe = () => {};
  Deno.addSignalListener("SIGTERM", onStop);
  Deno.addSignalListener("SIGINT", onStop);
  Deno.addSignalListener("SIGUSR1", onDump);
  Deno.addSignalListener("SIGPIPE", onPipe);
  const server = new Server();
  const impl = service.impl();
  server.register(TaskV2, impl);
  server.register(TaskV3, impl, { name: "containerd.task.v3.Task" });
  if (opts.listener) {
    server.serve(opts.listener).catch((err) => log.error("serving stopped", { error: err }));
  } else {
    await server.listen(flags.socket);
  }
  await opts.ready?.();
  log.debug("shim serving", {
    pid: Deno.pid,
    socket: flags.socket,
    namespace: flags.namespace,
    id: flags.id,
    adopted: !!opts.listener,
  });

  await stopped;
  log.debug("shim stopping", { containers: service.containers.size });
  // Cleanup is bounded: whatever hangs (a runtime call, a stuck fifo), the shim still exits.
  const forced = setTimeout(() => {
    log.error("shim cleanup took too long; exiting anyway");
    Deno.exit(1);
  }, STOP_DEADLINE_MS);
  // Stop answering first (a new start for this group then starts a new shim), then end what is left.
  const unlock = await lockGroup(flags.socket);
  try {
    await server.shutdown({ timeoutMs: 2000 });
    removeGroupFiles(flags.socket);
  } finally {
    unlock();
  }
  for (const c of service.containers.values()) {
    try {
      if (c.init.state !== "deleted") {
        await c.kill("", 9, true).catch(() => {});
        await Promise.race([c.init.exited, new Promise((r) => setTimeout(r, 2000))]);
        await c.delete("").catch((err) => log.warn("cleanup failed", { id: c.id, error: err }));
      }
    } catch (err) {
      log.warn("cleanup failed", { id: c.id, error: err });
    }
  }
  await publisher.close(3000);
  reaper.stop();
  Deno.removeSignalListener("SIGTERM", onStop);
  Deno.removeSignalListener("SIGINT", onStop);
  Deno.removeSignalListener("SIGUSR1", onDump);
  Deno.removeSignalListener("SIGPIPE", onPipe);
  await flushTracing(1000);
  clearTimeout(forced);
  log.debug("shim exited");
  home.close();
  return 0;
}
