/**
 * Task helpers shared by `containers rm`, `tasks` and `run`: the Tasks
 * service when the daemon has it, and a plain answer when it does not.
 * @module
 */

import { Code } from "../errdefs/mod.ts";
import { Tasks } from "../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { type Process, Status } from "../gen/containerd/types/task_pb.ts";
import type { Connection } from "./connection.ts";
import { HintedError, hintNotFound } from "./errors.ts";

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

/** The task of container `id`; NotFound with a hint when there is none. */
export async function getTask(conn: Connection, id: string, exec = ""): Promise<Process> {
  try {
    const { process } = await conn.service(Tasks).get({ containerId: id, execId: exec });
    if (!process) throw new HintedError(Code.NotFound, `task "${id}": not found`, "");
    return process;
  } catch (err) {
    throw tasksError(err, `no task for container "${id}"${exec ? ` (exec ${exec})` : ""}: list tasks with: berth -n ${conn.namespace} tasks ls; start one with: berth tasks start ${id}`);
  }
}

/** Adds hints to errors of task calls: not found, or no Tasks service in this daemon. */
export function tasksError(err: unknown, notFoundHint: string): unknown {
  const code = (err as { code?: Code }).code;
  if (code === Code.Unimplemented) {
    return new HintedError(Code.Unimplemented, `this berth daemon does not run tasks (no Tasks service): ${(err as Error).message}`, "update berth; the task manager is part of the daemon's runtime plugin", { cause: err });
  }
  return hintNotFound(err, notFoundHint);
}

/** Deletes container `id`'s task if it is stopped or only created; refuses a live one. */
export async function deleteTaskIfStopped(conn: Connection, id: string): Promise<void> {
  const task = await findTask(conn, id);
  if (task === undefined) return;
  if (task.status === Status.STOPPED || task.status === Status.CREATED) {
    await conn.service(Tasks).delete({ containerId: id });
    return;
  }
  throw new HintedError(Code.FailedPrecondition, `cannot delete a non stopped container: task is ${statusName(task.status)}`, `stop it first: berth tasks kill ${id}`);
}
