/**
 * The shim's log: a fifo named `log` in the bundle that the shim opens for
 * writing (Go shims block in that open until someone reads), copied here to
 * the daemon's stderr as containerd copies it to its own.
 *
 * @module
 */

import { log } from "../log/mod.ts";
import { run, spawn } from "../spawn/mod.ts";

/** A running copy of one shim log fifo. */
export interface ShimLog {
  /** Stops copying (what the shim writes later is dropped; Go shims ignore SIGPIPE). */
  close(): Promise<void>;
}

/**
 * Makes `<bundle>/log` as a fifo when missing and copies what comes out of
 * it to stderr. The fifo is read by a `cat` child over a pipe rather than
 * by reading the fifo here: Deno reads files on a small pool of blocking
 * threads, and one read waiting on each idle shim's fifo would use that
 * pool up (with ~32 shims every file operation of the daemon stalls). A
 * child's pipe is read asynchronously instead.
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
  const reader = spawn("cat", [path], { stdout: "piped", stderr: "null" });
  let finished = false;
  const status = reader.status.finally(() => finished = true);
  const copying = (async () => {
    try {
      for await (const chunk of reader.stdout) await Deno.stderr.write(chunk);
    } catch (err) {
      log.warn("copying the shim log failed", { path, error: String(err) });
    }
  })();
  let closed: Promise<void> | undefined;
  return {
    close() {
      closed ??= (async () => {
        // cat ends by itself once the shim closes its end; one still blocked
        // in open (a shim that never wrote) or reading a live shim is stopped.
        if (!finished) {
          try {
            reader.kill("SIGKILL");
          } catch { /* exited meanwhile */ }
        }
        await status;
        await copying;
      })();
      return closed;
    },
  };
}
