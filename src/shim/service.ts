/**
 * The Task service (containerd.task.v2.Task, also served as v3): a thin map
 * from requests to the container/process model, publishing containerd's
 * task events in order (create, start, exec-added, exec-started, paused,
 * resumed, exit, delete).
 * @module
 */

import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { alreadyExists, BerthError, Code, invalidArgument, notFound } from "../errdefs/mod.ts";
import { packEvent, Topic } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import type { CallContext, ServiceImpl } from "../rpc/mod.ts";
import * as ev from "../gen/containerd/events/task_pb.ts";
import {
  CheckpointOptionsSchema,
  ProcessDetailsSchema,
} from "../gen/containerd/runc/v1/options_pb.ts";
import { Status } from "../gen/containerd/types/task_pb.ts";
import type {
  CheckpointTaskRequest,
  CloseIORequest,
  ConnectRequest,
  CreateTaskRequest,
  DeleteRequest,
  ExecProcessRequest,
  KillRequest,
  PauseRequest,
  PidsRequest,
  ResizePtyRequest,
  ResumeRequest,
  ShutdownRequest,
  StartRequest,
  StateRequest,
  StatsRequest,
  Task,
  UpdateTaskRequest,
  WaitRequest,
} from "../gen/containerd/task/v2/shim_pb.ts";
import { fromBinary } from "@bufbuild/protobuf";
import { Container, type ContainerEnv } from "./container.ts";
import type { Process } from "./process.ts";
import type { Publisher } from "./publisher.ts";
import type { Reaper } from "./reaper.ts";
import { metricsAny } from "./stats.ts";

const STATUS: Record<string, Status> = {
  created: Status.CREATED,
  running: Status.RUNNING,
  stopped: Status.STOPPED,
  paused: Status.PAUSED,
  pausing: Status.PAUSING,
};

/** What the service needs from the serve process. */
export interface ServiceDeps {
  namespace: string;
  reaper: Reaper;
  publisher: Publisher;
  debug: boolean;
  /** Asked to end the shim (Shutdown with no containers left). */
  shutdown: () => void;
  /** Told when a container's Create succeeded, with its bundle. */
  created?: (bundle: string) => void;
  /** Told after each container's init started (the serve process then makes sure a spare waits). */
  started?: () => void;
  /**
   * Told when this shim lets go of a container's bundle (its init deleted,
   * or its Create failed): containerd removes the directory next. `serving`
   * lists the bundles of the containers still here.
   */
  released?: (bundle: string, serving: string[]) => void;
}

/** The shim's state behind the Task API. */
export class TaskService {
  readonly containers = new Map<string, Container>();
  /** Ids whose Create is in progress (a second Create of the same id is AlreadyExists). */
  private readonly creating = new Set<string>();
  /** Wait calls in progress, per "container/exec" key (for the state dump). */
  readonly waiting = new Map<string, number>();
  private readonly env: ContainerEnv;

  constructor(private readonly deps: ServiceDeps) {
    this.env = {
      namespace: deps.namespace,
      reaper: deps.reaper,
      debug: deps.debug,
      onExit: (c, p) => this.exited(c, p),
    };
  }

  private get pub(): Publisher {
    return this.deps.publisher;
  }

  /** The container `id`; NotFound when this shim has none. */
  container(id: string): Container {
    const c = this.containers.get(id);
    if (!c) throw notFound(`container ${id}: container not created`);
    return c;
  }

  private exited(c: Container, p: Process): void {
    if (p.state === "deleted" && !p.isInit) return; // an exec deleted before it ran
    if (p.isInit && !this.containers.has(c.id)) return; // deleted before it ever ran
    // The kernel's OOM killer is seen through the cgroup's counter when a
    // process exits, so TaskOOM comes before that process's TaskExit.
    if (c.takeOomKill()) this.pub.publish(Topic.TaskOOM, ev.TaskOOMSchema, { containerId: c.id });
    this.pub.publish(Topic.TaskExit, ev.TaskExitSchema, {
      containerId: c.id,
      id: p.execId || c.id,
      pid: p.pid,
      exitStatus: p.exit!.status,
      exitedAt: timestampFromDate(p.exit!.at),
    });
  }

  private releaseBundle(bundle: string): void {
    try {
      this.deps.released?.(bundle, [...this.containers.values()].map((c) => c.bundle));
    } catch (err) {
      log.warn("releasing a bundle failed", { bundle, error: err });
    }
  }

  /** A readable dump of containers, processes and pending waits (SIGUSR1). */
  dump(): string {
    const lines = [`containers: ${this.containers.size}, events queued: ${this.pub.pending}`];
    for (const c of this.containers.values()) {
      lines.push(
        `container ${c.id} bundle=${c.bundle} runtime=${c.runc.binary} root=${c.runc.root}`,
      );
      for (const p of c.all()) {
        const key = `${c.id}/${p.execId}`;
        lines.push(
          `  ${p.execId || "init"} pid=${p.pid} state=${c.stateOf(p)} exit=${
            p.exit ? p.exit.status : "-"
          } waits=${this.waiting.get(key) ?? 0} terminal=${p.stdio.terminal}`,
        );
      }
    }
    return lines.join("\n");
  }

  /** The Task service's implementation: this object, one named handler per method. */
  impl(): ServiceImpl<typeof Task> {
    return this;
  }

  /** Creates a container (runc create) and its init process. */
  async create(req: CreateTaskRequest, ctx?: CallContext) {
    if (!req.id) throw invalidArgument("create: id must not be empty");
    if (this.containers.has(req.id) || this.creating.has(req.id)) {
      throw alreadyExists(`container ${req.id}`);
    }
    this.creating.add(req.id);
    try {
      const c = await Container.create({
        id: req.id,
        bundle: req.bundle,
        rootfs: req.rootfs.map((m) => ({ type: m.type, source: m.source, options: m.options })),
        stdio: {
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          terminal: req.terminal,
        },
        options: req.options,
        checkpoint: req.checkpoint,
        trace: ctx?.span,
      }, this.env).catch((err) => {
        this.releaseBundle(req.bundle);
        throw err;
      });
      this.containers.set(req.id, c);
      this.deps.created?.(req.bundle);
      this.pub.publish(Topic.TaskCreate, ev.TaskCreateSchema, {
        containerId: req.id,
        bundle: req.bundle,
        rootfs: req.rootfs,
        io: {
          stdin: req.stdin,
          stdout: req.stdout,
          stderr: req.stderr,
          terminal: req.terminal,
        },
        checkpoint: req.checkpoint,
        pid: c.init.pid,
      });
      return { pid: c.init.pid };
    } finally {
      this.creating.delete(req.id);
    }
  }

  /** Starts the init process or an exec. */
  async start(req: StartRequest, ctx?: CallContext) {
    const c = this.container(req.id);
    const p = await c.start(req.execId, (p) => {
      if (p.isInit) {
        this.pub.publish(Topic.TaskStart, ev.TaskStartSchema, {
          containerId: c.id,
          pid: p.pid,
        });
      } else {
        this.pub.publish(Topic.TaskExecStarted, ev.TaskExecStartedSchema, {
          containerId: c.id,
          execId: p.execId,
          pid: p.pid,
        });
      }
    }, ctx?.span);
    if (p.isInit) this.deps.started?.();
    return { pid: p.pid };
  }

  /** Deletes a stopped process; the init takes the container with it. */
  async delete(req: DeleteRequest, ctx?: CallContext) {
    const c = this.container(req.id);
    const p = await c.delete(req.execId, ctx?.span);
    const exitedAt = p.exit ? timestampFromDate(p.exit.at) : undefined;
    if (p.isInit) {
      this.containers.delete(c.id);
      this.releaseBundle(c.bundle);
      this.pub.publish(Topic.TaskDelete, ev.TaskDeleteSchema, {
        containerId: c.id,
        pid: p.pid,
        exitStatus: p.exit?.status ?? 0,
        exitedAt,
      });
    }
    return { pid: p.pid, exitStatus: p.exit?.status ?? 0, exitedAt };
  }

  /** Adds an exec process (started by Start). */
  exec(req: ExecProcessRequest) {
    const c = this.container(req.id);
    c.exec(req.execId, {
      stdin: req.stdin,
      stdout: req.stdout,
      stderr: req.stderr,
      terminal: req.terminal,
    }, req.spec);
    this.pub.publish(Topic.TaskExecAdded, ev.TaskExecAddedSchema, {
      containerId: c.id,
      execId: req.execId,
    });
    return {};
  }

  /** The state of the init process or an exec. */
  state(req: StateRequest) {
    const c = this.container(req.id);
    const p = c.process(req.execId);
    return {
      id: p.execId || c.id,
      bundle: c.bundle,
      pid: p.pid,
      status: STATUS[c.stateOf(p)] ?? Status.UNKNOWN,
      stdin: p.stdio.stdin,
      stdout: p.stdio.stdout,
      stderr: p.stdio.stderr,
      terminal: p.stdio.terminal,
      exitStatus: p.exit?.status ?? 0,
      exitedAt: p.exit ? timestampFromDate(p.exit.at) : undefined,
      execId: req.execId,
    };
  }

  /** Freezes the container. */
  async pause(req: PauseRequest) {
    const c = this.container(req.id);
    await c.pause();
    this.pub.publish(Topic.TaskPaused, ev.TaskPausedSchema, { containerId: c.id });
    return {};
  }

  /** Thaws the container. */
  async resume(req: ResumeRequest) {
    const c = this.container(req.id);
    await c.resume();
    this.pub.publish(Topic.TaskResumed, ev.TaskResumedSchema, { containerId: c.id });
    return {};
  }

  /** Signals a process, or all of the container's. */
  async kill(req: KillRequest, ctx?: CallContext) {
    await this.container(req.id).kill(req.execId, req.signal, req.all, ctx?.span);
    return {};
  }

  /** The container's pids, with exec ids where known. */
  async pids(req: PidsRequest) {
    const c = this.container(req.id);
    const pids = await c.pids();
    const byPid = new Map([...c.execs.values()].map((p) => [p.pid, p.execId]));
    const processes: MessageInitShape<typeof Task.method.pids.output>["processes"] = pids.map(
      (pid) => {
        const execId = byPid.get(pid);
        return execId ? { pid, info: packEvent(ProcessDetailsSchema, { execId }) } : { pid };
      },
    );
    return { processes };
  }

  /** Closes a process's stdin. */
  closeIO(req: CloseIORequest) {
    const p = this.container(req.id).process(req.execId);
    if (req.stdin) p.closeStdin();
    return {};
  }

  /** Resizes a process's terminal. */
  resizePty(req: ResizePtyRequest) {
    this.container(req.id).process(req.execId).resize(req.width, req.height);
    return {};
  }

  /** Checkpoints the container with runc (criu). */
  async checkpoint(req: CheckpointTaskRequest) {
    const c = this.container(req.id);
    let exit = false;
    let workPath = "";
    if (req.options && req.options.typeUrl) {
      const o = fromBinary(CheckpointOptionsSchema, req.options.value);
      exit = o.exit;
      workPath = o.workPath;
    }
    await c.checkpoint(req.path, { exit, workPath });
    return {};
  }

  /** Changes the container's resources. */
  async update(req: UpdateTaskRequest) {
    await this.container(req.id).update(req.resources);
    return {};
  }

  /** Waits for a process to exit; cancelled with the call. */
  async wait(req: WaitRequest, ctx: CallContext) {
    const p = this.container(req.id).process(req.execId);
    const key = `${req.id}/${req.execId}`;
    this.waiting.set(key, (this.waiting.get(key) ?? 0) + 1);
    try {
      const exit = await Promise.race([p.exited, aborted(ctx.signal)]);
      return { exitStatus: exit.status, exitedAt: timestampFromDate(exit.at) };
    } finally {
      const n = (this.waiting.get(key) ?? 1) - 1;
      if (n > 0) this.waiting.set(key, n);
      else this.waiting.delete(key);
    }
  }

  /** The container's cgroup metrics. */
  stats(req: StatsRequest) {
    const c = this.container(req.id);
    if (!c.cgroup) throw notFound(`cgroup of ${req.id} does not exist`);
    return { stats: metricsAny(c.cgroup) };
  }

  /** Which shim and task this is. */
  connect(req: ConnectRequest) {
    const c = this.containers.get(req.id);
    return { shimPid: Deno.pid, taskPid: c?.init.pid ?? 0, version: "" };
  }

  /** Exits the shim once it manages no container. */
  shutdown(_req: ShutdownRequest) {
    // A group shim stays while it manages any container.
    if (this.containers.size === 0 && this.creating.size === 0) {
      log.debug("shutdown requested; no containers left");
      setTimeout(() => this.deps.shutdown(), 0);
    }
    return {};
  }
}

function aborted(signal: AbortSignal): Promise<never> {
  return new Promise((_, reject) => {
    const fail = () => reject(new BerthError(Code.Canceled, "wait canceled"));
    if (signal.aborted) fail();
    else signal.addEventListener("abort", fail, { once: true });
  });
}
