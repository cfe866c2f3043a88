/**
 * Signal names and numbers (generic Linux numbering: x86_64 and arm64).
 * The shim receives numbers from containerd and reports a killed process's
 * signal as a number; people and Deno's APIs use names.
 *
 * @example
 * ```ts
 * import { signalName, signalNumber } from "./signal.ts";
 * signalNumber("SIGTERM"); // 15
 * signalName(9); // "SIGKILL"
 * ```
 * @module
 */

import { invalid } from "./libc.ts";

// Index n-1 holds the name of signal n.
const NAMES = [
  "SIGHUP",
  "SIGINT",
  "SIGQUIT",
  "SIGILL",
  "SIGTRAP",
  "SIGABRT",
  "SIGBUS",
  "SIGFPE",
  "SIGKILL",
  "SIGUSR1",
  "SIGSEGV",
  "SIGUSR2",
  "SIGPIPE",
  "SIGALRM",
  "SIGTERM",
  "SIGSTKFLT",
  "SIGCHLD",
  "SIGCONT",
  "SIGSTOP",
  "SIGTSTP",
  "SIGTTIN",
  "SIGTTOU",
  "SIGURG",
  "SIGXCPU",
  "SIGXFSZ",
  "SIGVTALRM",
  "SIGPROF",
  "SIGWINCH",
  "SIGIO",
  "SIGPWR",
  "SIGSYS",
] as const;

const SIGRTMIN = 34; // as glibc presents it (32 and 33 are its own)
const SIGRTMAX = 64;

/**
 * The number of a signal given by name ("SIGTERM", also "TERM", "SIGPOLL",
 * "SIGRTMIN+3") or by number (checked to be in 0..64; 0 only tests that a
 * process exists). Unknown names throw an EINVAL SyscallError.
 */
export function signalNumber(sig: number | string): number {
  if (typeof sig === "number") {
    if (!Number.isInteger(sig) || sig < 0 || sig > SIGRTMAX) {
      throw invalid("signal", `${sig} is not a signal number`);
    }
    return sig;
  }
  const name = sig.toUpperCase().startsWith("SIG") ? sig.toUpperCase() : `SIG${sig.toUpperCase()}`;
  const i = (NAMES as readonly string[]).indexOf(name);
  if (i >= 0) return i + 1;
  if (name === "SIGPOLL") return 29;
  if (name === "SIGIOT") return 6;
  const rt = /^SIGRTM(IN|AX)(?:([+-])(\d+))?$/.exec(name);
  if (rt) {
    const base = rt[1] === "IN" ? SIGRTMIN : SIGRTMAX;
    const n = base + (rt[2] === "-" ? -1 : 1) * Number(rt[3] ?? 0);
    if (n >= SIGRTMIN && n <= SIGRTMAX) return n;
  }
  throw invalid("signal", `unknown signal ${JSON.stringify(sig)}`);
}

/** The name of signal `n`, e.g. 15 -> "SIGTERM", 36 -> "SIGRTMIN+2". */
export function signalName(n: number): string {
  if (n >= 1 && n <= NAMES.length) return NAMES[n - 1];
  if (n >= SIGRTMIN && n <= SIGRTMAX) {
    return n === SIGRTMIN ? "SIGRTMIN" : `SIGRTMIN+${n - SIGRTMIN}`;
  }
  return `SIG${n}`;
}
