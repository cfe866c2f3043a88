/**
 * Failpoints: named places where a process can be made to die on purpose,
 * so that tests can prove what a crash at that very step leaves behind.
 * Off unless `BERTH_FAILPOINTS` (a comma-separated list of names) is set in
 * the process's environment; a named point logs and SIGKILLs the process,
 * as an out-of-memory kill or a power cut would, with no cleanup at all.
 *
 * @example
 * ```ts
 * import { failpoint } from "../failpoint/mod.ts";
 * await createBundle(...);
 * failpoint("task-create:bundle");
 * ```
 * @module
 */

import { log } from "../log/mod.ts";

const ENV = "BERTH_FAILPOINTS";

let armed: Set<string> | undefined;

function points(): Set<string> {
  if (armed === undefined) {
    let text = "";
    try {
      text = Deno.env.get(ENV) ?? "";
    } catch { /* no env permission: none armed */ }
    armed = new Set(text.split(",").map((s) => s.trim()).filter((s) => s !== ""));
  }
  return armed;
}

/** Kills this process with SIGKILL when `name` is armed in BERTH_FAILPOINTS; else nothing. */
export function failpoint(name: string): void {
  if (!points().has(name)) return;
  log.warn("failpoint reached: killing this process", { failpoint: name, pid: Deno.pid });
  Deno.kill(Deno.pid, "SIGKILL");
}
