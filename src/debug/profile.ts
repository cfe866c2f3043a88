/**
 * Heap snapshots and CPU profiles of the running daemon, through what Deno
 * offers in-process: node:v8's getHeapSnapshot (the .heapsnapshot JSON that
 * Chrome DevTools' Memory panel opens) and node:inspector's Profiler domain
 * (a .cpuprofile, which DevTools' Performance panel opens). Both modules are
 * imported on first use only.
 * @module
 */

import { BerthError, Code, invalidArgument } from "../errdefs/mod.ts";

/** A heap snapshot of this process, streamed as V8 writes it. */
export async function heapSnapshot(): Promise<ReadableStream<Uint8Array>> {
  const v8 = await import("node:v8");
  const { Readable } = await import("node:stream");
  return Readable.toWeb(v8.getHeapSnapshot()) as unknown as ReadableStream<Uint8Array>;
}

let profiling = false;

/** Longest profile asked for, in seconds (containerd's pprof takes any; a bound keeps a typo from hanging a client for hours). */
export const MAX_PROFILE_SECONDS = 300;

/**
 * Samples this process' CPU for `seconds` and returns the profile (the
 * Profiler.Profile object: nodes, startTime, endTime, samples, timeDeltas).
 * One profile at a time: a second request meanwhile is FailedPrecondition.
 * An abort of `signal` ends the sampling early (the daemon is stopping).
 */
export async function cpuProfile(seconds: number, signal?: AbortSignal): Promise<unknown> {
  if (!(seconds > 0 && seconds <= MAX_PROFILE_SECONDS)) {
    throw invalidArgument(`seconds must be in (0, ${MAX_PROFILE_SECONDS}], got ${seconds}`);
  }
  if (profiling) {
    throw new BerthError(Code.FailedPrecondition, "a CPU profile is being taken already");
  }
  profiling = true;
  const { Session } = await import("node:inspector");
  const session = new Session();
  session.connect();
  const post = <T>(method: string, params: object = {}) =>
    new Promise<T>((resolve, reject) =>
      // deno-lint-ignore no-explicit-any
      (session.post as any)(
        method,
        params,
        (err: Error | null, res: T) => err ? reject(err) : resolve(res),
      )
    );
  try {
    await post("Profiler.enable");
    await post("Profiler.start");
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, signal?.aborted ? 0 : seconds * 1000);
      signal?.addEventListener("abort", done, { once: true });
      function done() {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        resolve();
      }
    });
    const { profile } = await post<{ profile: unknown }>("Profiler.stop");
    return profile;
  } finally {
    await post("Profiler.disable").catch(() => {});
    session.disconnect();
    profiling = false;
  }
}
