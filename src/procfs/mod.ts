/**
 * Reading /proc/<pid>/stat: the one place that knows its command field may
 * hold spaces and parentheses, so fields are counted after its last ")".
 * No imports, so the shim, the daemon and the metrics may all load it.
 * @module
 */

/**
 * The fields of /proc/`pid`/stat from the third (the state letter) on:
 * index 0 is the state, 1 the parent pid, 11 utime, 19 the start time, as
 * proc(5) numbers them minus three. Undefined when the process is gone.
 */
export function procStat(pid: number | "self"): string[] | undefined {
  let stat: string;
  try {
    stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(")") + 2).split(" ");
}

/** The state letter of `pid` ("R", "S", "Z" for a zombie ...), undefined when it is gone. */
export function procState(pid: number): string | undefined {
  return procStat(pid)?.[0];
}
