/**
 * File-system calls Deno lacks: named pipes, which the shim's process IO
 * uses (containerd hands a task its stdio as fifo paths).
 * @module
 */

import { check, cString, invalid, libc } from "./libc.ts";

/**
 * Makes a fifo at `path` with permission bits `mode` (less the umask).
 * EEXIST if the path exists.
 *
 * @example
 * ```ts
 * mkfifo("/run/berth/c1/stdout", 0o600);
 * ```
 */
export function mkfifo(path: string, mode = 0o600): void {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw invalid("mkfifo", `bad mode ${mode}`);
  }
  check(libc().mkfifo(cString(path, "mkfifo"), mode), "mkfifo", path);
}
