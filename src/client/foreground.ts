/**
 * Running a process in the foreground, as `run`, `tasks start`, `tasks
 * exec` and `tasks attach` do: stdio copied, terminal raw with -t (restored
 * on every path out), signals forwarded without -t, the exit status waited
 * for and returned.
 * @module
 */

import { Tasks } from "../gen/containerd/services/tasks/v1/tasks_pb.ts";
import type { Connection } from "./connection.ts";
import { type FifoIO, forwardResize, forwardSignals, rawTerminal } from "./stdio.ts";

/** What {@link runAttached} needs. */
export interface Attached {
  containerId: string;
  /** "" for the task's init process. */
  execId: string;
  /** The fifos of the process (copying starts here), or undefined for null IO / log URIs. */
  io?: FifoIO;
  tty: boolean;
  /** Starts the process (after the wait is registered, so no exit is missed); undefined when running already. */
  start?: () => Promise<void>;
  /**
   * Removes the process once it exited (task delete, or delete of the exec),
   * before the output is drained: removing it has the shim flush and close
   * its ends of the fifos, so the copies end without a timeout being armed.
   * Its errors are ignored (the exit status is what counts).
   */
  remove?: () => Promise<unknown>;
}

/** Runs a process attached to this terminal and returns its exit status. */
export async function runAttached(conn: Connection, a: Attached): Promise<number> {
  const tasks = conn.service(Tasks);
  const waiting = tasks.wait({ containerId: a.containerId, execId: a.execId });
  // A failed start rejects `waiting` too; keep that from being an unhandled rejection.
  waiting.catch(() => {});
  let restore = () => {};
  const stops: (() => void)[] = [];
  try {
    if (a.tty) restore = rawTerminal();
    a.io?.start(conn, a.containerId, a.execId, true);
    // The console exists once the process is created: size it before the
    // process starts, so its first look at the terminal sees the real size.
    if (a.tty) stops.push(await forwardResize(conn, a.containerId, a.execId));
    if (a.start) await a.start();
    if (!a.tty) stops.push(forwardSignals(conn, a.containerId, a.execId));
    const { exitStatus } = await waiting;
    if (a.remove) await a.remove().catch(() => {});
    await a.io?.drain();
    return exitStatus;
  } finally {
    for (const s of stops) s();
    restore();
    await a.io?.close();
  }
}
