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

/**
 * What /proc/`pid`/status says of how `signal` would reach it: whether the
 * process is the init of its pid namespace (NSpid ends in 1), and whether it
 * catches the signal (SigCgt). Undefined when the process is gone.
 */
export function signalReach(
  pid: number,
  signal: number,
): { namespaceInit: boolean; caught: boolean } | undefined {
  let status: string;
  try {
    status = Deno.readTextFileSync(`/proc/${pid}/status`);
  } catch {
    return undefined;
  }
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*(.*)$`, "m"))?.[1] ?? "";
  const nspids = field("NSpid").split(/\s+/);
  const caught = BigInt(`0x${field("SigCgt") || "0"}`);
  return {
    namespaceInit: nspids.length > 1 && nspids[nspids.length - 1] === "1",
    caught: ((caught >> BigInt(signal - 1)) & 1n) === 1n,
  };
}

/**
 * Resolves once `signal` can reach `pid`, or at `until` (epoch ms). The
 * kernel drops a signal sent to a pid namespace's init unless the init
 * catches it, so one sent just after a container started, before its
 * program installed its handler, is lost for good; this waits for the
 * handler. A process that is not such an init, or is gone, resolves at once.
 */
export async function untilSignalReaches(
  pid: number,
  signal: number,
  until: number,
): Promise<void> {
  for (;;) {
    const reach = signalReach(pid, signal);
    if (reach === undefined || !reach.namespaceInit || reach.caught) return;
    if (Date.now() >= until) return;
    await new Promise((r) => setTimeout(r, 10));
  }
}
