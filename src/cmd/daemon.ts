/**
 * Entry of `berth daemon`: flags and config in, a running daemon until SIGTERM or SIGINT.
 * @module
 */
import { loadConfig } from "../config/mod.ts";
import { startDaemon } from "../daemon/mod.ts";
import { log, setLogFormat, setLogLevel } from "../log/mod.ts";
import { configPathOf, DAEMON_USAGE, parseDaemonArgs } from "./daemon_args.ts";

/** How often the daemon gives malloc's free memory back (a walk of its arenas, well under 1 ms idle). */
const TRIM_MS = 2000;
/** Growth of ArrayBuffer memory (Deno.memoryUsage().external) that makes the daemon collect garbage. */
const EXTERNAL_GROWTH = 2 << 20;

/**
 * Returns a function, run every TRIM_MS, that collects garbage when the
 * memory of ArrayBuffers has grown by EXTERNAL_GROWTH since the last
 * collection, then gives malloc's free memory back. V8 sizes its collections
 * by its own heap, which is small here, so the buffers of an image import
 * or of many requests (each pinning its malloc'd bytes) can stay for
 * minutes after their last use. A full collection of the daemon's heap
 * takes a few ms and runs only after such growth. Without --expose-gc (a
 * `deno run` without RUNTIME_FLAGS) only the trim runs.
 */
export function memoryTidier(release: () => boolean): () => void {
  const gc = (globalThis as { gc?: () => void }).gc;
  let collectedAt = Deno.memoryUsage().external;
  return () => {
    if (gc !== undefined) {
      const external = Deno.memoryUsage().external;
      if (external > collectedAt + EXTERNAL_GROWTH) {
        gc();
        collectedAt = Deno.memoryUsage().external;
      } else if (external < collectedAt) {
        collectedAt = external;
      }
    }
    release();
  };
}

/** Runs the daemon mode; returns the process exit status (0 after a clean shutdown). */
export async function daemonMain(args: string[]): Promise<number> {
  // The listeners go in before anything starts, as containerd's do: a
  // SIGTERM that comes while plugins load or sockets open (a client can
  // already be served on the first socket) is a request to stop, never
  // the default action that kills the daemon with its sockets and lock.
  let daemon: Awaited<ReturnType<typeof startDaemon>> | undefined;
  let signals = 0;
  let resolveStopped!: () => void;
  const stopped = new Promise<void>((resolve) => resolveStopped = resolve);
  const stopDaemon = () => daemon!.stop(signals === 1 ? {} : { timeoutMs: 0 }).then(resolveStopped);
  const onSignal = (sig: Deno.Signal) => () => {
    signals++;
    if (signals === 1) log.info("received signal; shutting down", { signal: sig });
    // A second signal stops waiting for calls in flight.
    else log.warn("received another signal; closing now", { signal: sig });
    // While starting, the stop waits for the start to finish (below).
    if (daemon !== undefined) stopDaemon();
  };
  const handlers: Array<[Deno.Signal, () => void]> = [["SIGTERM", onSignal("SIGTERM")], [
    "SIGINT",
    onSignal("SIGINT"),
  ]];
  for (const [s, h] of handlers) Deno.addSignalListener(s, h);

  let trimmer: ReturnType<typeof setInterval> | undefined;
  try {
    try {
      const parsed = parseDaemonArgs(args);
      if (parsed.help) {
        console.log(DAEMON_USAGE);
        return 0;
      }
      const { config, warnings } = await loadConfig(await configPathOf(parsed), parsed.overrides);
      setLogLevel(config.debug.level);
      setLogFormat(config.debug.format as "text" | "json");
      for (const w of warnings) log.warn(w);
      daemon = await startDaemon(config);
      // What loading and starting left free in malloc's arenas goes back to
      // the kernel (~18 MB on a start without Deno's caches), and so, every
      // TRIM_MS, does what requests left there (~4 MB after an image import),
      // after collecting their dead buffers (memoryTidier): glibc keeps freed
      // memory resident; Go's runtime returns it by itself.
      const { releaseFreeMemory } = await import("../../ffi/mod.ts");
      releaseFreeMemory();
      trimmer = setInterval(memoryTidier(releaseFreeMemory), TRIM_MS);
      Deno.unrefTimer(trimmer);
    } catch (err) {
      log.error("berth daemon failed to start", {
        error: err instanceof Error ? err.message : String(err),
      });
      return 1;
    }
    if (signals > 0) stopDaemon();
    await stopped;
    return 0;
  } finally {
    clearInterval(trimmer);
    for (const [s, h] of handlers) Deno.removeSignalListener(s, h);
  }
}
