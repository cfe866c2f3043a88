/**
 * Task helpers shared by `containers rm`, `tasks` and `run`: the Tasks
 * service when the daemon has it, and a plain answer when it does not.
 * @module
 */

import { DEFAULT_STATE } from "../defaults/mod.ts";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Tasks } from "../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { type Process, Status } from "../gen/containerd/types/task_pb.ts";
import type { Container } from "../gen/containerd/services/containers/v1/containers_pb.ts";
import { Snapshots } from "../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Mount } from "../gen/containerd/types/mount_pb.ts";
import { type FlagValues, str } from "./cli.ts";
import type { Connection } from "./connection.ts";
import { HintedError, hintNotFound } from "./errors.ts";
import { FifoIO } from "./stdio.ts";
import { Containers } from "../gen/containerd/services/containers/v1/containers_pb.ts";

/** Status names as ctr prints them. */
export function statusName(s: Status): string {
  return (Status[s] ?? "UNKNOWN").toUpperCase();
}

/** The task of container `id`, or undefined when it has none (or the daemon runs no tasks). */
export async function findTask(conn: Connection, id: string): Promise<Process | undefined> {
  try {
    const { process } = await conn.service(Tasks).get({ containerId: id });
    return process;
  } catch (err) {
    const code = (err as { code?: Code }).code;
    if (code === Code.NotFound || code === Code.Unimplemented) return undefined;
    throw err;
  }
}

/** The task of container `id` (or its process `exec`); NotFound saying what is missing. */
export async function getTask(conn: Connection, id: string, exec = ""): Promise<Process> {
  try {
    const { process } = await conn.service(Tasks).get({ containerId: id, execId: exec });
    if (!process) throw new BerthError(Code.NotFound, `task "${id}": not found`);
    return process;
  } catch (err) {
    throw await explainTaskError(conn, err, id, exec);
  }
}

/**
 * The error a task call on container `id` (process `exec`) failed with,
 * made exact by looking now: a NotFound says whether the container, its
 * task or the process is missing, or names the state of a process that
 * has exited, each with the command that helps; Unimplemented says the
 * daemon runs no tasks. Other errors pass unchanged.
 */
export async function explainTaskError(
  conn: Connection,
  err: unknown,
  id: string,
  exec = "",
): Promise<unknown> {
  const code = (err as { code?: Code }).code;
  if (code !== Code.NotFound || !id || err instanceof HintedError) return tasksError(err, "");
  const ns = `berth -n ${conn.namespace}`;
  const found = (p: Promise<unknown>) =>
    p.then(() => true, (e) => {
      if ((e as { code?: Code }).code === Code.NotFound) return false;
      throw e;
    });
  if (!await found(conn.service(Containers).get({ id }))) {
    return new HintedError(
      Code.NotFound,
      `container "${id}": not found`,
      `list containers with: ${ns} containers ls`,
      { cause: err },
    );
  }
  const task = await findTask(conn, id);
  if (task === undefined) {
    return new HintedError(
      Code.NotFound,
      `container "${id}" has no task`,
      `start one with: ${ns} tasks start ${id}`,
      { cause: err },
    );
  }
  let proc: Process | undefined = task;
  if (exec) {
    proc = await conn.service(Tasks).get({ containerId: id, execId: exec }).then(
      (r) => r.process,
      () => undefined,
    );
    if (proc === undefined) {
      return new HintedError(
        Code.NotFound,
        `task "${id}" has no process "${exec}"`,
        `list its processes with: ${ns} tasks ps ${id}`,
        { cause: err },
      );
    }
  }
  if (proc.status === Status.STOPPED) {
    const what = exec ? `process "${exec}" of task "${id}"` : `task "${id}"`;
    return new HintedError(
      Code.FailedPrecondition,
      `${what} is STOPPED (exit status ${proc.exitStatus})`,
      `delete it with: ${ns} tasks delete ${exec ? `--exec-id ${exec} ` : ""}${id}`,
      { cause: err },
    );
  }
  return err;
}

/** Adds hints to errors of task calls: not found, or no Tasks service in this daemon. */
export function tasksError(err: unknown, notFoundHint: string): unknown {
  const code = (err as { code?: Code }).code;
  if (code === Code.Unimplemented) {
    return new HintedError(
      Code.Unimplemented,
      `this berth daemon does not run tasks (no Tasks service): ${(err as Error).message}`,
      "update berth; the task manager is part of the daemon's runtime plugin",
      { cause: err },
    );
  }
  return hintNotFound(err, notFoundHint);
}

/** Deletes container `id`'s task if it is stopped or only created; refuses a live one. */
export async function deleteTaskIfStopped(conn: Connection, id: string): Promise<void> {
  const task = await findTask(conn, id);
  if (task === undefined) return;
  if (task.status === Status.STOPPED || task.status === Status.CREATED) {
    await conn.service(Tasks).delete({ containerId: id });
    await removeFifoDir(task);
    return;
  }
  throw new HintedError(
    Code.FailedPrecondition,
    `cannot delete container "${id}": its task is ${statusName(task.status)}`,
    `stop it first: berth -n ${conn.namespace} tasks kill ${id} (-s SIGKILL if it ignores SIGTERM)`,
  );
}

/** How a new process's stdio is wired. */
export interface IOChoice {
  /** Fifo paths (or a log URI in stdout/stderr), "" for none. */
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
}

/** Creates container `c`'s task (its rootfs from the container's snapshot); returns the pid. */
export async function createTask(conn: Connection, c: Container, io: IOChoice): Promise<number> {
  let rootfs: Mount[] = [];
  if (c.snapshotKey && c.snapshotter) {
    rootfs =
      (await conn.service(Snapshots).mounts({ snapshotter: c.snapshotter, key: c.snapshotKey }))
        .mounts;
  }
  try {
    const r = await conn.service(Tasks).create({ containerId: c.id, rootfs, ...io });
    return r.pid;
  } catch (err) {
    if ((err as { code?: Code }).code === Code.AlreadyExists) {
      const task = await findTask(conn, c.id).catch(() => undefined);
      const state = task ? statusName(task.status) : "";
      const ns = `berth -n ${conn.namespace}`;
      throw new HintedError(
        Code.AlreadyExists,
        `container "${c.id}" has a task already${state ? ` (${state})` : ""}`,
        task?.status === Status.STOPPED || task?.status === Status.CREATED
          ? `delete it with: ${ns} tasks delete ${c.id}`
          : `stop it with: ${ns} tasks kill ${c.id}, then delete it with: ${ns} tasks delete ${c.id}`,
      );
    }
    throw tasksError(err, "");
  }
}

/** I/O choice from ctr's --null-io / --log-uri flags, or undefined when fifos are wanted. */
function fixedIO(
  nullIO: boolean,
  logURI: string | undefined,
  terminal: boolean,
): IOChoice | undefined {
  if (nullIO) return { stdin: "", stdout: "", stderr: "", terminal: false };
  if (logURI) {
    const uri = logURI.includes("://")
      ? logURI
      : `file://${logURI.startsWith("/") ? "" : Deno.cwd() + "/"}${logURI}`;
    return { stdin: "", stdout: uri, stderr: uri, terminal };
  }
  return undefined;
}

/** The process whose stdio {@link openIO} wires. */
export interface IOTarget {
  containerId: string;
  /** "" for the task's init process. */
  execId: string;
  terminal: boolean;
  /** The client leaves after start: the fifos stay for a later attach. */
  detach: boolean;
}

/**
 * The stdio a new process gets from ctr's IO flags: --null-io, --log-uri,
 * or else fresh fifos under --fifo-dir (default: {@link defaultFifoDir} of
 * the daemon's `address`) that this client starts copying (then `io` is set).
 */
export async function openIO(
  conn: Connection,
  flags: FlagValues,
  address: string,
  t: IOTarget,
): Promise<{ choice: IOChoice; io?: FifoIO }> {
  const choice = fixedIO(flags["null-io"] === true, str(flags, "log-uri"), t.terminal);
  if (choice) return { choice };
  const io = await FifoIO.create(
    str(flags, "fifo-dir") ?? defaultFifoDir(address),
    t.execId ? `${t.containerId}-${t.execId}` : t.containerId,
    t.terminal,
    t.detach,
  );
  io.start(conn, t.containerId, t.execId, !t.detach);
  return { choice: io.paths, io };
}

/** The default fifo directory: next to the daemon's socket, like ctr's /run/containerd/fifo. */
function defaultFifoDir(address: string): string {
  return `${address.slice(0, address.lastIndexOf("/")) || DEFAULT_STATE}/fifo`;
}

/** Removes the fifo directory a detached process was given by this client (`<fifo-dir>/<id>-XXXX`). */
export async function removeFifoDir(p: Process): Promise<void> {
  const path = p.stdout || p.stdin;
  if (!path || path.includes("://")) return;
  const dir = path.slice(0, path.lastIndexOf("/"));
  const base = dir.slice(dir.lastIndexOf("/") + 1);
  if (!base.startsWith(`${p.id || p.containerId}-`)) return;
  try {
    if (!(await Deno.lstat(path)).isFifo) return;
  } catch {
    return;
  }
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
