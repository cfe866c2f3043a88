/**
 * The Tasks service (containerd.services.tasks.v1.Tasks) over the runtime
 * v2 task manager: a container record becomes a task (bundle from its
 * spec, rootfs from its snapshot, IO from the request) and every other
 * call goes to the shim serving the task. Task events come from the shims
 * themselves (through the events Forward service), so nothing is
 * published here.
 *
 * @module
 */

import { type Any, timestampNow } from "@bufbuild/protobuf/wkt";
import { Code, failedPrecondition, invalidArgument, toBerthError } from "../../errdefs/mod.ts";
import { adaptFields, parseFilters } from "../../filters/mod.ts";
import {
  type CheckpointTaskRequest,
  type CloseIORequest,
  type CreateTaskRequest,
  type DeleteProcessRequest,
  type DeleteTaskRequest,
  type ExecProcessRequest,
  type GetRequest,
  type KillRequest,
  type ListPidsRequest,
  type ListTasksRequest,
  type MetricsRequest,
  type PauseTaskRequest,
  type ResizePtyRequest,
  type ResumeTaskRequest,
  type StartRequest,
  Tasks,
  type UpdateTaskRequest,
  type WaitRequest,
} from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import type { StateResponse } from "../../gen/containerd/task/v2/shim_pb.ts";
import type { Metadata } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { type ShimTask, TaskManager } from "../../runtime/mod.ts";
import type { Snapshotter } from "../../snapshots/mod.ts";
import type { CallContext } from "../../rpc/mod.ts";
import type { Span } from "../../tracing/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { type RPCService, rpcService } from "../mod.ts";

/** The type URL containerd stores OCI specs under. */
const SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/** A shim's State answer as the v1 API's Process. */
function processOf(s: StateResponse, containerId: string) {
  return {
    containerId,
    id: s.execId || s.id,
    pid: s.pid,
    status: s.status,
    stdin: s.stdin,
    stdout: s.stdout,
    stderr: s.stderr,
    terminal: s.terminal,
    exitStatus: s.exitStatus,
    exitedAt: s.exitedAt,
  };
}

/** True for errors meaning "that task or its shim is gone", skipped by List and Metrics. */
function isGone(err: unknown): boolean {
  const code = toBerthError(err).code;
  return code === Code.NotFound || code === Code.Unavailable;
}

/** What the Tasks service needs of the task manager (a test can stand in for it). */
export type TaskSource = Pick<TaskManager, "get" | "list" | "create" | "delete">;

/**
 * The Tasks service, one named handler per method as containerd's
 * services/tasks/local.go: the transport edge (ids, namespace, message
 * shapes) over the task manager and the shims' Task services.
 */
export class TasksService {
  constructor(
    readonly manager: TaskSource,
    readonly md: Metadata,
    readonly snapshotters: ReadonlyMap<string, Snapshotter>,
  ) {}

  /** The task of container `id` in the call's namespace. */
  #task(ctx: CallContext, id: string): ShimTask {
    if (id === "") throw invalidArgument("container id is required");
    return this.manager.get(namespaceRequired(ctx), id);
  }

  /** The mounts of a container's snapshot, for a Create that names no rootfs. */
  async #rootfsOf(ns: string, snapshotter: string, key: string) {
    const backend = this.snapshotters.get(snapshotter);
    if (backend === undefined) {
      throw invalidArgument(
        `snapshotter not loaded: ${snapshotter} (loaded: ${
          [...this.snapshotters.keys()].join(", ")
        })`,
      );
    }
    const mounts = await this.md.snapshotter(backend).mounts(ns, key);
    return mounts.map((m) => ({ type: m.type, source: m.source, target: "", options: m.options }));
  }

  /** Starts a shim for the container and creates its task. */
  async create(req: CreateTaskRequest, ctx: CallContext) {
    const ns = namespaceRequired(ctx);
    if (req.containerId === "") throw invalidArgument("container id is required");
    const container = this.md.containers.get(ns, req.containerId);
    if (req.checkpoint !== undefined) {
      throw failedPrecondition(
        `task ${req.containerId}: restoring from a checkpoint image is not supported by berth`,
      );
    }
    if (container.spec.typeUrl !== SPEC_TYPE_URL && !container.spec.typeUrl.endsWith("/Spec")) {
      throw invalidArgument(
        `container ${container.id}: spec has type ${container.spec.typeUrl}, not an OCI runtime spec`,
      );
    }
    let rootfs = req.rootfs.map((m) => ({
      type: m.type,
      source: m.source,
      target: m.target,
      options: m.options,
    }));
    if (rootfs.length === 0 && container.snapshotKey !== "") {
      rootfs = await this.#rootfsOf(ns, container.snapshotter, container.snapshotKey);
    }
    const opts = container.runtime.options;
    const { pid } = await this.manager.create(ns, container.id, {
      spec: container.spec.value,
      runtime: container.runtime.name,
      runtimePath: req.runtimePath,
      runtimeOptions: opts === undefined
        ? undefined
        : { $typeName: "google.protobuf.Any", typeUrl: opts.typeUrl, value: opts.value },
      taskOptions: req.options,
      rootfs,
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      terminal: req.terminal,
      trace: ctx.span,
    });
    return { containerId: container.id, pid };
  }

  /** Starts the task's init process, or one of its execs. */
  async start(req: StartRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    const r = await t.task.start({ id: t.id, execId: req.execId }, traced(ctx));
    return { pid: r.pid };
  }

  /** Deletes the task and its shim. */
  async delete(req: DeleteTaskRequest, ctx: CallContext) {
    const ns = namespaceRequired(ctx);
    if (req.containerId === "") throw invalidArgument("container id is required");
    const r = await this.manager.delete(ns, req.containerId, ctx.span);
    return { id: req.containerId, pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
  }

  /** Deletes one exec of the task. */
  async deleteProcess(req: DeleteProcessRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    if (req.execId === "") throw invalidArgument("exec id is required (use Delete for the task)");
    const r = await t.task.delete({ id: t.id, execId: req.execId }, traced(ctx));
    return { id: req.execId, pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
  }

  /** The state of the task's init process or of an exec. */
  async get(req: GetRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    const s = await t.task.state({ id: t.id, execId: req.execId }, traced(ctx));
    return { process: processOf(s, t.id) };
  }

  /** The namespace's tasks that pass the filter; tasks whose shim is gone are left out. */
  async list(req: ListTasksRequest, ctx: CallContext) {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(req.filter ? [req.filter] : []);
    const states = await Promise.all(
      this.manager.list(ns).map(async (t) => {
        try {
          return processOf(await t.task.state({ id: t.id }, { timeoutMs: 10_000 }), t.id);
        } catch (err) {
          if (isGone(err)) return undefined;
          throw err;
        }
      }),
    );
    const tasks = states.filter((p) => p !== undefined).filter((p) =>
      filter.match(adaptFields({ id: p.id, container_id: p.containerId, pid: p.pid }))
    );
    return { tasks };
  }

  /** Signals the task's init process, an exec, or all its processes. */
  async kill(req: KillRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    await t.task.kill(
      { id: t.id, execId: req.execId, signal: req.signal, all: req.all },
      traced(ctx),
    );
    return {};
  }

  /** Adds an exec process to the task. */
  async exec(req: ExecProcessRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    if (req.execId === "") throw invalidArgument("exec id cannot be empty");
    if (req.spec === undefined) throw invalidArgument("exec: the process spec is required");
    await t.task.exec({
      id: t.id,
      execId: req.execId,
      terminal: req.terminal,
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      spec: req.spec,
    });
    return {};
  }

  /** Resizes a process's terminal. */
  async resizePty(req: ResizePtyRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    await t.task.resizePty({ id: t.id, execId: req.execId, width: req.width, height: req.height });
    return {};
  }

  /** Closes a process's stdin. */
  async closeIO(req: CloseIORequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    await t.task.closeIO({ id: t.id, execId: req.execId, stdin: req.stdin });
    return {};
  }

  /** Freezes the task's processes. */
  async pause(req: PauseTaskRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    await t.task.pause({ id: t.id });
    return {};
  }

  /** Thaws the task's processes. */
  async resume(req: ResumeTaskRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    await t.task.resume({ id: t.id });
    return {};
  }

  /** The pids of the task's processes. */
  async listPids(req: ListPidsRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    const r = await t.task.pids({ id: t.id });
    return { processes: r.processes };
  }

  /**
   * Has the runtime write a checkpoint, then fails: berth cannot store
   * checkpoint images in the content store yet, and says so.
   */
  async checkpoint(req: CheckpointTaskRequest, ctx: CallContext): Promise<never> {
    const t = this.#task(ctx, req.containerId);
    const dir = await Deno.makeTempDir({ prefix: `berth-checkpoint-${t.id}-` });
    try {
      await t.task.checkpoint({ id: t.id, path: dir, options: req.options }).catch((err) => {
        const e = toBerthError(err);
        throw Object.assign(e, { message: `checkpoint task ${t.id}: ${e.message}` });
      });
      throw failedPrecondition(
        `checkpoint task ${t.id}: the runtime wrote a checkpoint, but berth cannot yet store checkpoint images in the content store`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }

  /** Changes the task's resources or annotations. */
  async update(req: UpdateTaskRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    await t.task.update({ id: t.id, resources: req.resources, annotations: req.annotations });
    return {};
  }

  /** Stats of the namespace's tasks that pass the filters; gone shims are left out. */
  async metrics(req: MetricsRequest, ctx: CallContext) {
    const ns = namespaceRequired(ctx);
    const filter = parseFilters(req.filters);
    const chosen = this.manager.list(ns).filter((t) =>
      filter.match(adaptFields({ id: t.id, namespace: ns }))
    );
    const metrics = await Promise.all(chosen.map(async (t) => {
      try {
        const r = await t.task.stats({ id: t.id }, { timeoutMs: 10_000 });
        return { timestamp: timestampNow(), id: t.id, data: r.stats as Any | undefined };
      } catch (err) {
        if (isGone(err)) return undefined;
        throw err;
      }
    }));
    return { metrics: metrics.filter((m) => m !== undefined) };
  }

  /** Waits for a process to exit (ends early when the call is cancelled). */
  async wait(req: WaitRequest, ctx: CallContext) {
    const t = this.#task(ctx, req.containerId);
    const r = await t.task.wait({ id: t.id, execId: req.execId }, {
      signal: ctx.signal,
      trace: ctx.span,
    });
    return { exitStatus: r.exitStatus, exitedAt: r.exitedAt };
  }
}

/** Call options carrying the request's span to the shim, when the request is traced. */
function traced(ctx: CallContext): { trace: Span } | undefined {
  return ctx.span === undefined ? undefined : { trace: ctx.span };
}

/** The Tasks service on `manager`, reading containers from `md` and rootfs mounts from `snapshotters`. */
export function tasksService(
  manager: TaskSource,
  md: Metadata,
  snapshotters: ReadonlyMap<string, Snapshotter>,
): RPCService {
  return rpcService(Tasks, new TasksService(manager, md, snapshotters));
}

/** The plugin serving it: io.containerd.grpc.v1.tasks. */
export const tasksPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "tasks",
  requires: ["io.containerd.runtime.v2", "io.containerd.metadata.v1"],
  init: (ctx) =>
    tasksService(
      ctx.first<TaskManager>("io.containerd.runtime.v2"),
      ctx.first<Metadata>("io.containerd.metadata.v1"),
      ctx.all<Snapshotter>("io.containerd.snapshotter.v1"),
    ),
};
