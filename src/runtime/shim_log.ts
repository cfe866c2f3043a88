/**
 * The shim's log: a fifo named `log` in the bundle that the shim opens for
 * writing (Go shims block in that open until someone reads), copied here to
 * the daemon's stderr as containerd copies it to its own.
 *
 * @module
 */

import { log } from "../log/mod.ts";
import { run } from "../spawn/mod.ts";

/** A running copy of one shim log fifo. */
export interface ShimLog {
  /** Stops copying and closes the fifo. */
  close(): Promise<void>;
}

/**
 * Makes `<bundle>/log` as a fifo when missing and copies what comes out of
 * it to stderr. The fifo is opened read-write: the open never blocks, and
 * a shim that restarts its writer (or is replaced after a daemon restart)
 * finds a reader at once.
 */
export async function openShimLog(bundlePath: string): Promise<ShimLog> {
  const path = `${bundlePath}/log`;
  try {
    await Deno.lstat(path);
  } catch {
    const r = await run("mkfifo", ["-m", "0700", path]);
    if (!r.success) {
      throw new Error(`mkfifo ${path}: ${new TextDecoder().decode(r.stderr).trim()}`);
    }
  }
  const file = await Deno.open(path, { read: true, write: true });
  // Kept to wake the reader at close; opened now so that a bundle removed
  // meanwhile cannot leave the read hanging.
  const waker = await Deno.open(path, { write: true });
  let closing = false;
  const copying = (async () => {
    const buf = new Uint8Array(16 * 1024);
    try {
      while (true) {
        const n = await file.read(buf);
        if (n === null || closing) return;
        await Deno.stderr.write(buf.subarray(0, n));
      }
    } catch (err) {
      if (!closing) log.warn("copying the shim log failed", { path, error: String(err) });
    }
  })();
  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= (async () => {
        closing = true;
        // Our own descriptor also writes, so the read never sees EOF: one
        // byte through a second descriptor wakes it. (A write through the
        // same descriptor would queue behind the pending read.)
        try {
          await waker.write(new Uint8Array([10]));
        } finally {
          waker.close();
        }
        await copying;
        file.close();
      })();
      return closed;
    },
  };
}
