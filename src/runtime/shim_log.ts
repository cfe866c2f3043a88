/**
 * The shim's log: a fifo named `log` in the bundle that the shim opens for
 * writing (Go shims block in that open until someone reads), copied here to
 * the daemon's stderr as containerd copies it to its own.
 *
 * @module
 */

import { close as closeFd, isErrno, mkfifo, openFifo, readFd } from "../../ffi/mod.ts";
import { log } from "../log/mod.ts";

/** A running copy of one shim log fifo. */
export interface ShimLog {
  /** Stops copying (what the shim writes later is dropped; Go shims ignore SIGPIPE). */
  close(): Promise<void>;
}

/**
 * Makes `<bundle>/log` as a fifo when missing and copies what comes out of
 * it to stderr. The fifo is opened read-write and nonblocking through ffi:
 * the open never waits for a writer, our own write end means a shim that
 * closes and reopens it is no end of file, and the reads wait on ffi's
 * poller. (Deno's file reads would each hold one of its few blocking
 * threads per idle shim; a `cat` per shim costs a process.)
 */
export async function openShimLog(bundlePath: string): Promise<ShimLog> {
  const path = `${bundlePath}/log`;
  try {
    await Deno.lstat(path);
  } catch {
    mkfifo(path, 0o700);
  }
  const fd = openFifo(path, "readwrite");
  const stop = new AbortController();
  const copying = (async () => {
    const buf = new Uint8Array(16 << 10);
    try {
      for (;;) {
        const n = await readFd(fd, buf, { signal: stop.signal });
        if (n === 0) break;
        await Deno.stderr.write(buf.subarray(0, n));
      }
    } catch (err) {
      if (!stop.signal.aborted) {
        log.warn("copying the shim log failed", { path, error: String(err) });
      }
    }
  })();
  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= (async () => {
        stop.abort();
        await copying;
        // What the shim wrote last is still copied: read until the fifo is empty.
        const buf = new Uint8Array(16 << 10);
        try {
          for (;;) {
            const n = await readFd(fd, buf, { signal: AbortSignal.abort() });
            if (n === 0) break;
            await Deno.stderr.write(buf.subarray(0, n));
          }
        } catch (err) {
          if (!(err instanceof DOMException) && !isErrno(err, "EAGAIN")) {
            log.debug("draining the shim log failed", { path, error: String(err) });
          }
        }
        closeFd(fd);
      })();
      return closed;
    },
  };
}
