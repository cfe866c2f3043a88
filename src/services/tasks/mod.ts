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
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import type { StateResponse } from "../../gen/containerd/task/v2/shim_pb.ts";
import type { Metadata } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { type ShimTask, TaskManager } from "../../runtime/mod.ts";
import type { Snapshotter } from "../../snapshots/mod.ts";
import type { CallContext } from "../../rpc/mod.ts";
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

/** The Tasks service on `manager`, reading containers from `md` and rootfs mounts from `snapshotters`. */
export function tasksService(
  manager: TaskManager,
  md: Metadata,
  snapshotters: ReadonlyMap<string, Snapshotter>,
): RPCService {
  const task = (ctx: CallContext, id: string): ShimTask => {
    if (id === "") throw invalidArgument("container id is required");
    return manager.get(namespaceRequired(ctx), id);
  };
  const rootfsOf = async (ns: string, snapshotter: string, key: string) => {
    const backend = snapshotters.get(snapshotter);
    if (backend === undefined) {
      throw invalidArgument(
        `snapshotter not loaded: ${snapshotter} (loaded: ${[...snapshotters.keys()].join(", ")})`,
      );
    }
    const mounts = await md.snapshotter(backend).mounts(ns, key);
    return mounts.map((m) => ({ type: m.type, source: m.source, target: "", options: m.options }));
  };

  return rpcService(Tasks, {
    async create(req, ctx) {
      const ns = namespaceRequired(ctx);
      if (req.containerId === "") throw invalidArgument("container id is required");
      const container = md.containers.get(ns, req.containerId);
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
        rootfs = await rootfsOf(ns, container.snapshotter, container.snapshotKey);
      }
      const opts = container.runtime.options;
      const { pid } = await manager.create(ns, container.id, {
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
      });
      return { containerId: container.id, pid };
    },

    async start(req, ctx) {
      const t = task(ctx, req.containerId);
      const r = await t.task.start({ id: t.id, execId: req.execId });
      return { pid: r.pid };
    },

    async delete(req, ctx) {
      const ns = namespaceRequired(ctx);
      if (req.containerId === "") throw invalidArgument("container id is required");
      const r = await manager.delete(ns, req.containerId);
      return { id: req.containerId, pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
    },

    async deleteProcess(req, ctx) {
      const t = task(ctx, req.containerId);
      if (req.execId === "") throw invalidArgument("exec id is required (use Delete for the task)");
      const r = await t.task.delete({ id: t.id, execId: req.execId });
      return { id: req.execId, pid: r.pid, exitStatus: r.exitStatus, exitedAt: r.exitedAt };
    },

    async get(req, ctx) {
      const t = task(ctx, req.containerId);
      const s = await t.task.state({ id: t.id, execId: req.execId });
      return { process: processOf(s, t.id) };
    },

    async list(req, ctx) {
      const ns = namespaceRequired(ctx);
      const filter = parseFilters(req.filter ? [req.filter] : []);
      const states = await Promise.all(
        manager.list(ns).map(async (t) => {
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
    },

    async kill(req, ctx) {
      const t = task(ctx, req.containerId);
      await t.task.kill({ id: t.id, execId: req.execId, signal: req.signal, all: req.all });
      return {};
    },

    async exec(req, ctx) {
      const t = task(ctx, req.containerId);
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
    },

    async resizePty(req, ctx) {
      const t = task(ctx, req.containerId);
      await t.task.resizePty({
        id: t.id,
        execId: req.execId,
        width: req.width,
        height: req.height,
      });
      return {};
    },

    async closeIO(req, ctx) {
      const t = task(ctx, req.containerId);
      await t.task.closeIO({ id: t.id, execId: req.execId, stdin: req.stdin });
      return {};
    },

    async pause(req, ctx) {
      const t = task(ctx, req.containerId);
      await t.task.pause({ id: t.id });
      return {};
    },

    async resume(req, ctx) {
      const t = task(ctx, req.containerId);
      await t.task.resume({ id: t.id });
      return {};
    },

    async listPids(req, ctx) {
      const t = task(ctx, req.containerId);
      const r = await t.task.pids({ id: t.id });
      return { processes: r.processes };
    },

    async checkpoint(req, ctx) {
      const t = task(ctx, req.containerId);
      const dir = await Deno.makeTempDir({ prefix: `berth-checkpoint-${t.id}-` });
      try {
        await t.task.checkpoint({ id: t.id, path: dir, options: req.options }).catch((err) => {
          const e = toBerthError(err);
          throw Object.assign(e, { message: `checkpoint task ${t.id}: ${e.message}` });
        });
        // The image is on disk, but berth has no writer of checkpoint images
        // into the content store yet: say so rather than return nothing.
        throw failedPrecondition(
          `checkpoint task ${t.id}: the runtime wrote a checkpoint, but berth cannot yet store checkpoint images in the content store`,
        );
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },

    async update(req, ctx) {
      const t = task(ctx, req.containerId);
      await t.task.update({ id: t.id, resources: req.resources, annotations: req.annotations });
      return {};
    },

    async metrics(req, ctx) {
      const ns = namespaceRequired(ctx);
      const filter = parseFilters(req.filters);
      const chosen = manager.list(ns).filter((t) =>
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
    },

    async wait(req, ctx) {
      const t = task(ctx, req.containerId);
      const r = await t.task.wait({ id: t.id, execId: req.execId }, { signal: ctx.signal });
      return { exitStatus: r.exitStatus, exitedAt: r.exitedAt };
    },
  });
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
