/**
 * The runtime v2 task manager: shims started with their binary's `start`
 * action, reached over ttrpc, reloaded and cleaned up the way containerd's
 * runtime v2 does it, so that berth drives its own shim and Debian's
 * containerd-shim-runc-v2 alike. A shim serves one task, a group the
 * task's annotations name (a shim says so by printing an address already
 * in use), or, by default, up to `shimGroupSize` tasks the daemon puts in
 * it (pool.ts).
 *
 * @module
 */

import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, timestampNow } from "@bufbuild/protobuf/wkt";
import { type Config, resolveRuntime } from "../config/mod.ts";
import { alreadyExists, Code, isCode, notFound } from "../errdefs/mod.ts";
import { type Exchange, Topic } from "../events/mod.ts";
import { TaskDeleteSchema, TaskExitSchema } from "../gen/containerd/events/task_pb.ts";
import { type DeleteResponse, Task } from "../gen/containerd/task/v2/shim_pb.ts";
import type { MountSchema } from "../gen/containerd/types/mount_pb.ts";
import { validateIdentifier } from "../identifiers/mod.ts";
import { SHIM_GROUP_ANNOTATIONS, shimGroupAnnotation } from "../labels/mod.ts";
import { log } from "../log/mod.ts";
import { type Span, withSpan } from "../tracing/mod.ts";
import { procState } from "../procfs/mod.ts";
import { type Client, connect, type ServiceClient, serviceClient } from "../ttrpc/mod.ts";
import {
  type Bundle,
  bundleOf,
  createBundle,
  deleteBundle,
  readBundleFile,
  writeBundleFile,
} from "./bundle.ts";
import { failpoint } from "../failpoint/mod.ts";
import { existsSync } from "../fsutil/mod.ts";
import {
  deleteShimBinary,
  resolveShimBinary,
  type ShimEnvironment,
  startShimBinary,
} from "./binary.ts";
import { configRuntimeOptions } from "./options.ts";
import { type PooledShim, ShimPool } from "./pool.ts";
import { openShimLog, type ShimLog } from "./shim_log.ts";

/** The ttrpc client of one shim's Task service. */
export type ShimTaskClient = ServiceClient<typeof Task>;

/** One connection to a shim, shared by every task that shim serves. */
interface ShimConnection {
  address: string;
  client: Client;
  /** Keys (`ns/id`) of the tasks served over it. */
  tasks: Set<string>;
  /** Set when the daemon shares this shim among its tasks (pool.ts). */
  pooled?: PooledShim;
}

/** The annotation naming a shim group explicitly (not through a CRI pod). */
const EXPLICIT_GROUP = SHIM_GROUP_ANNOTATIONS[0];

/** What cleaning up after a dead shim needs to know of its task. */
type DeadShim = Pick<ShimTask, "namespace" | "id" | "bundle" | "binary" | "log"> & {
  address: string;
};

/** A connection being made or made, by address. */
interface ConnectionEntry {
  promise: Promise<ShimConnection>;
  /** Set once connected. */
  conn?: ShimConnection;
}

/** A task the manager knows, served by a live shim. */
export interface ShimTask {
  readonly namespace: string;
  readonly id: string;
  readonly bundle: Bundle;
  /** The shim binary (for its delete action). */
  readonly binary: string;
  /** The shim's Task service, calls carrying the task's namespace. */
  readonly task: ShimTaskClient;
  /** @internal */
  readonly conn: ShimConnection;
  /** @internal */
  readonly log: ShimLog;
}

/** What creating a task takes (the Tasks service fills it from the container record). */
export interface CreateTaskOptions {
  /** The OCI spec as JSON. */
  spec: Uint8Array;
  /** The runtime name of the container (a runtimes table key or a runtime type). */
  runtime: string;
  /** A shim binary overriding the lookup by runtime name. */
  runtimePath?: string;
  /** The container's runtime options. */
  runtimeOptions?: Any;
  /** Options of this task's creation; sent to the shim instead of the runtime options when set. */
  taskOptions?: Any;
  rootfs: MessageInitShape<typeof MountSchema>[];
  stdin: string;
  stdout: string;
  stderr: string;
  terminal: boolean;
  /** A checkpoint directory to restore from. */
  checkpoint?: string;
  /** The span of the request this is done for: the steps nest under it. */
  trace?: Span;
}

/** Options of {@link TaskManager}. */
export interface TaskManagerOptions {
  /** `<root>/io.containerd.runtime.v2.task`: work directories. */
  root: string;
  /** `<state>/io.containerd.runtime.v2.task`: bundles. */
  state: string;
  env: ShimEnvironment;
  events: Exchange;
  config: Config;
  /** The runtime name a container record holds, for bundles written before shim-binary-path existed. */
  containerRuntime?: (namespace: string, id: string) => string | undefined;
  /** Most tasks the daemon puts in one shim; 0: a shim per task (containerd's way). Default 0. */
  shimGroupSize?: number;
  /** How long an emptied shared shim waits for a task before it is shut down (ms). Default 10 s. */
  shimIdleMs?: number;
}

/** How long an emptied shared shim waits for a new task, unless configured. */
export const DEFAULT_SHIM_IDLE_MS = 10_000;

/** How long an idle shared shim has to answer, close and exit when it is shut down. */
const RETIRE_TIMEOUT_MS = 5_000;

/** How long a shim has to answer when reloaded after a daemon restart. */
const LOAD_TIMEOUT_MS = 5_000;

/** How often, and how far apart, removing a failed create's bundle is retried. */
const BUNDLE_RETRIES = 120;
const BUNDLE_RETRY_MS = 500;

/** How many tasks a restarted daemon reloads at once. */
const RECOVER_WIDTH = 16;

const keyOf = (namespace: string, id: string) => `${namespace}/${id}`;

/** Manages shims and the tasks they serve; see the module doc. */
export class TaskManager {
  #opts: TaskManagerOptions;
  #tasks = new Map<string, ShimTask>();
  #pending = new Set<string>();
  #conns = new Map<string, ConnectionEntry>();
  #cleanups = new Set<Promise<void>>();
  /** Work going on in the background: reloads of shims that did not answer, bundle removals retried. */
  #background = new Set<Promise<void>>();
  #closing = false;
  #pool: ShimPool;

  /** A manager with no tasks; call {@link recover} to reload those of an earlier run. */
  constructor(opts: TaskManagerOptions) {
    this.#opts = opts;
    this.#pool = new ShimPool({
      size: opts.shimGroupSize ?? 0,
      idleMs: opts.shimIdleMs ?? DEFAULT_SHIM_IDLE_MS,
      dir: `${opts.state}/.shared-shims`,
      retire: (shim) => this.#retire(shim),
    });
  }

  /** The task `id` in `namespace`; NotFound when there is none. */
  get(namespace: string, id: string): ShimTask {
    const t = this.#tasks.get(keyOf(namespace, id));
    if (t === undefined) throw notFound(`task ${id} in namespace ${namespace}`);
    return t;
  }

  /** Every task in `namespace`. */
  list(namespace: string): ShimTask[] {
    return [...this.#tasks.values()].filter((t) => t.namespace === namespace);
  }

  async #connection(address: string): Promise<ShimConnection> {
    let entry = this.#conns.get(address);
    // A connection that closed a moment ago may still be listed: never hand it out.
    if (entry?.conn?.client.closed) {
      this.#conns.delete(address);
      entry = undefined;
    }
    if (entry === undefined) {
      const e: ConnectionEntry = {
        promise: this.#dial(address, (conn) => {
          e.conn = conn;
        }),
      };
      entry = e;
      this.#conns.set(address, e);
      e.promise.catch(() => {
        if (this.#conns.get(address) === e) this.#conns.delete(address);
      });
    }
    return await entry.promise;
  }

  /** Connects to the shim at `address`; `made` sees the connection before anyone awaits it. */
  async #dial(address: string, made: (c: ShimConnection) => void): Promise<ShimConnection> {
    const client = await connect(address);
    const conn: ShimConnection = { address, client, tasks: new Set() };
    made(conn);
    client.done.then(() => this.#connectionClosed(conn));
    return conn;
  }

  #forget(conn: ShimConnection): void {
    if (this.#conns.get(conn.address)?.conn === conn) this.#conns.delete(conn.address);
  }

  #release(conn: ShimConnection, key: string): void {
    conn.tasks.delete(key);
    // A shared shim's connection stays for the next task; the pool retires it.
    if (conn.tasks.size === 0 && conn.pooled === undefined) {
      this.#forget(conn);
      conn.client.close();
    }
  }

  #connectionClosed(conn: ShimConnection): void {
    this.#forget(conn);
    if (this.#closing) return; // shims outlive the daemon: the next one finds them
    if (conn.pooled !== undefined && this.#pool.at(conn.address) === conn.pooled) {
      this.#pool.forget(conn.address);
    }
    for (const key of conn.tasks) {
      const t = this.#tasks.get(key);
      if (t !== undefined && t.conn === conn) {
        log.info("shim disconnected", { id: t.id, namespace: t.namespace });
        conn.tasks.delete(key);
        this.#track(this.#cleanupDeadShim({ ...t, address: conn.address }, t));
      }
    }
  }

  #track(p: Promise<void>): void {
    this.#cleanups.add(p);
    p.finally(() => this.#cleanups.delete(p));
  }

  /**
   * After a shim is gone: its delete action, the bundle removed, and a
   * TaskExit and TaskDelete for the task (which no shim will report now)
   * unless the task was deleted meanwhile. `listed` is the task as the
   * manager lists it (none when found dead at recovery).
   */
  async #cleanupDeadShim(t: DeadShim, listed: ShimTask | undefined): Promise<void> {
    const key = keyOf(t.namespace, t.id);
    log.warn("cleaning up after shim disconnected", { id: t.id, namespace: t.namespace });
    let resp: DeleteResponse | undefined;
    try {
      resp = await deleteShimBinary(t.binary, this.#opts.env, t.bundle);
    } catch (err) {
      log.warn("failed to clean up after shim disconnected", {
        id: t.id,
        namespace: t.namespace,
        error: String(err),
      });
    }
    await t.log.close();
    await deleteBundle(t.bundle).catch((err) => this.#removeLater(t.bundle, key, err));
    await removeStaleSocket(t.address);
    if (listed !== undefined) {
      if (this.#tasks.get(key) !== listed) return; // deleted meanwhile: already reported
      this.#tasks.delete(key);
    }
    const exitedAt = resp?.exitedAt ?? timestampNow();
    const pid = resp?.pid ?? 0;
    const exitStatus = resp === undefined ? 255 : resp.exitStatus;
    try {
      this.#opts.events.publish(
        t.namespace,
        Topic.TaskExit,
        TaskExitSchema,
        create(TaskExitSchema, { containerId: t.id, id: t.id, pid, exitStatus, exitedAt }),
      );
      this.#opts.events.publish(
        t.namespace,
        Topic.TaskDelete,
        TaskDeleteSchema,
        create(TaskDeleteSchema, { containerId: t.id, pid, exitStatus, exitedAt }),
      );
    } catch (err) {
      log.warn("cannot publish exit of a dead shim's task", { id: t.id, error: String(err) });
    }
  }

  /**
   * Creates task `id`: bundle, shim (a shared shim with room, or one started
   * with its `start` action, which may point to an existing group shim),
   * then the shim's Create. Returns the task and the pid of its init
   * process. Nothing is left on failure.
   */
  async create(
    namespace: string,
    id: string,
    opts: CreateTaskOptions,
  ): Promise<{ task: ShimTask; pid: number }> {
    validateIdentifier(id, "task id");
    const key = keyOf(namespace, id);
    if (this.#tasks.has(key) || this.#pending.has(key)) {
      throw alreadyExists(`task ${id}: already exists`);
    }
    this.#pending.add(key);
    try {
      const resolved = resolveRuntime(this.#opts.config, opts.runtime);
      const binary = await resolveShimBinary(resolved.name, opts.runtimePath || resolved.binary);
      // The options the shim starts with: the task's, else the container's, else the table's.
      const shimOptions = opts.taskOptions ?? opts.runtimeOptions ??
        configRuntimeOptions(resolved.name, resolved.runtimeType, resolved.options);
      const place = this.#placement(namespace, id, binary, shimOptions, opts.spec);
      const trace = opts.trace;
      const bundleSpan = trace?.child("bundle");
      const bundle = await createBundle(
        this.#opts.root,
        this.#opts.state,
        namespace,
        id,
        opts.spec,
      ).catch((err) => {
        // Half made and not removable now (no fd to spare): removed later.
        const half = bundleOf(this.#opts.state, namespace, id);
        if (!isCode(err, Code.AlreadyExists) && existsSync(half.path)) {
          this.#removeLater(half, key, err);
        }
        throw err;
      });
      failpoint("task-create:bundle");
      let shimLog: ShimLog | undefined;
      let conn: ShimConnection | undefined;
      let task: ShimTaskClient | undefined;
      try {
        shimLog = await openShimLog(bundle.path);
        // Kept so that a restarted daemon finds the same binary.
        await writeBundleFile(bundle, "shim-binary-path", binary);
        bundleSpan?.finish();
        failpoint("task-create:shim");
        conn = place.pod !== undefined
          ? await this.#joinPod(place.pod, bundle)
          : await this.#shimFor(binary, bundle, shimOptions, place.poolKey, trace);
        conn.tasks.add(key);
        task = this.#taskClient(conn, namespace);
        const resp = await task.create({
          id,
          bundle: bundle.path,
          rootfs: opts.rootfs,
          terminal: opts.terminal,
          stdin: opts.stdin,
          stdout: opts.stdout,
          stderr: opts.stderr,
          checkpoint: opts.checkpoint ?? "",
          // As containerd does: the task's options, else the runtime's. Debian's
          // shim reads runc's settings (BinaryName, ...) from here, not from its start.
          options: shimOptions,
        }, trace === undefined ? undefined : { trace });
        failpoint("task-create:runc");
        const t: ShimTask = { namespace, id, bundle, binary, task, conn, log: shimLog };
        this.#tasks.set(key, t);
        return { task: t, pid: resp.pid };
      } catch (err) {
        await this.#undoCreate(bundle, binary, task, conn, key, shimLog);
        throw err;
      }
    } finally {
      this.#pending.delete(key);
    }
  }

  /**
   * Where a new task's shim comes from. A container of a CRI pod (its spec
   * names the pod's sandbox, which runs) goes into the sandbox's shim,
   * whichever that is. Otherwise `poolKey` says what tasks sharing a shim
   * have in common: namespace, binary and options; a pod's sandbox is
   * placed like any task, so that pods share the daemon's shims. poolKey is
   * undefined when the task gets a shim of its own: sharing off, or its spec
   * names an explicit shim group (or a pod whose sandbox is not known here),
   * which the shim's `start` resolves.
   */
  #placement(
    namespace: string,
    id: string,
    binary: string,
    options: Any | undefined,
    spec: Uint8Array,
  ): { poolKey?: string; pod?: ShimConnection } {
    let annotations: Record<string, string> | undefined;
    try {
      annotations = JSON.parse(new TextDecoder().decode(spec))?.annotations;
    } catch {
      return {}; // the shim reports what is wrong with the spec
    }
    const group = shimGroupAnnotation(annotations);
    if (group !== undefined && annotations?.[EXPLICIT_GROUP] === undefined && group !== id) {
      const sandbox = this.#tasks.get(keyOf(namespace, group));
      if (sandbox !== undefined && sandbox.binary === binary) return { pod: sandbox.conn };
    }
    if (!this.#pool.enabled) return {};
    if (group !== undefined && group !== id) return {};
    if (annotations?.[EXPLICIT_GROUP] !== undefined) return {};
    const opts = options === undefined
      ? ""
      : btoa(String.fromCharCode(...toBinary(AnySchema, options)));
    return { poolKey: `${namespace}\n${binary}\n${opts}` };
  }

  /** The connection of a pod's sandbox shim for one more of its containers (address in the bundle). */
  async #joinPod(conn: ShimConnection, bundle: Bundle): Promise<ShimConnection> {
    await writeBundleFile(bundle, "address", conn.address);
    // Counted in a shared shim, so it does not retire while the container lives.
    if (conn.pooled !== undefined) this.#pool.hold(conn.pooled);
    return conn;
  }

  /**
   * The connection to the shim a new task goes to: a shared shim with room
   * (its address written into the bundle, as `start` would), else a shim
   * started with the binary's `start` action (which writes the address).
   */
  async #shimFor(
    binary: string,
    bundle: Bundle,
    options: Any | undefined,
    poolKey: string | undefined,
    trace?: Span,
  ): Promise<ShimConnection> {
    return await withSpan(
      trace,
      "shim",
      (span) => this.#shimOf(binary, bundle, options, poolKey, span),
    );
  }

  async #shimOf(
    binary: string,
    bundle: Bundle,
    options: Any | undefined,
    poolKey: string | undefined,
    span: Span | undefined,
  ): Promise<ShimConnection> {
    // A shim with room, else a place in one being started, else start one (ShimPool.claim).
    const claim = poolKey === undefined ? undefined : this.#pool.claim(poolKey);
    let ticket = claim !== undefined && "ticket" in claim ? claim.ticket : undefined;
    const shared = claim === undefined || "ticket" in claim
      ? undefined
      : "shim" in claim
      ? claim.shim
      : await claim.waiting;
    span?.set("shim.shared", shared !== undefined);
    if (shared !== undefined) {
      let conn: ShimConnection | undefined;
      try {
        conn = await this.#connection(shared.address);
      } catch (err) {
        // Gone since its last task (killed, or stopped by hand): start a new one.
        log.warn("shared shim is gone; starting another", {
          address: shared.address,
          error: String(err),
        });
        this.#pool.release(shared);
        await this.#pool.forget(shared.address);
      }
      if (conn !== undefined) {
        conn.pooled = shared;
        try {
          await writeBundleFile(bundle, "address", shared.address);
        } catch (err) {
          this.#pool.release(shared);
          throw err;
        }
        return conn;
      }
    }
    // No place found (or the shim found is gone): this container starts one.
    if (poolKey !== undefined) ticket ??= this.#pool.starting(poolKey);
    try {
      const started = span?.child("shim start action");
      const address = await startShimBinary(binary, this.#opts.env, bundle, options);
      started?.finish();
      const connecting = span?.child("shim connect");
      const conn = await this.#connection(address);
      connecting?.finish();
      if (poolKey !== undefined) {
        conn.pooled = await this.#pool.add({
          key: poolKey,
          namespace: bundle.namespace,
          address,
          binary,
        });
      }
      ticket?.done(conn.pooled);
      return conn;
    } finally {
      ticket?.done(undefined); // a no-op after success: the failed start's waiters start their own
    }
  }

  /**
   * Shuts an idle shared shim down and lets go of its connection, then waits
   * (bounded) for the process to be gone, so that a daemon that stops leaves
   * no shim of its own behind.
   */
  async #retire(shim: PooledShim): Promise<void> {
    log.debug("retiring an idle shared shim", { address: shim.address });
    const entry = this.#conns.get(shim.address);
    let conn = entry?.conn;
    try {
      conn ??= await this.#connection(shim.address);
    } catch {
      await removeStaleSocket(shim.address);
      return; // gone already
    }
    if (conn.tasks.size > 0) return; // taken meanwhile (should not happen: retiring shims are skipped)
    const task = this.#taskClient(conn, shim.namespace);
    const opts = { timeoutMs: RETIRE_TIMEOUT_MS };
    const pid = (await task.connect({ id: "" }, opts).catch(() => undefined))?.shimPid ?? 0;
    await task.shutdown({ id: "" }, opts).catch(() => {});
    conn.pooled = undefined;
    // The shim closes its connections as it stops; then it exits.
    await within(conn.client.done, RETIRE_TIMEOUT_MS);
    this.#forget(conn);
    conn.client.close();
    if (pid > 0) await waitGone(pid, RETIRE_TIMEOUT_MS);
  }

  async #undoCreate(
    bundle: Bundle,
    binary: string,
    task: ShimTaskClient | undefined,
    conn: ShimConnection | undefined,
    key: string,
    shimLog: ShimLog | undefined,
  ): Promise<void> {
    if (task !== undefined && conn !== undefined && !conn.client.closed) {
      await task.delete({ id: bundle.id }, { timeoutMs: 10_000 }).catch(() => {});
      // A shared shim stays for other tasks; the pool retires it when idle.
      if (conn.pooled === undefined) {
        await task.shutdown({ id: bundle.id }, { timeoutMs: 10_000 }).catch(() => {});
      }
    }
    if (conn?.pooled !== undefined) this.#pool.release(conn.pooled);
    if (conn !== undefined) this.#release(conn, key);
    // The shim may have been started even if nothing answered: its delete action cleans up.
    if (await readBundleFile(bundle, "address").catch(() => undefined) !== undefined) {
      await deleteShimBinary(binary, this.#opts.env, bundle).catch((err) =>
        log.warn("shim delete after failed create", { id: bundle.id, error: String(err) })
      );
    }
    await shimLog?.close();
    await deleteBundle(bundle).catch((err) => this.#removeLater(bundle, key, err));
  }

  /**
   * Retries removing a bundle (of a failed create, a deleted task, a dead
   * shim's task) that could not be removed at once (no fd to spare: EMFILE):
   * left, it would refuse every later create
   * of its id until the daemon restarts. Skips a round while a create of
   * that id is under way; stops once one made its task, or the daemon stops.
   */
  #removeLater(bundle: Bundle, key: string, err: unknown): void {
    log.warn("cannot remove bundle yet, retrying", { path: bundle.path, error: String(err) });
    const retry = (async () => {
      for (let i = 0; i < BUNDLE_RETRIES; i++) {
        await new Promise((r) => setTimeout(r, BUNDLE_RETRY_MS));
        // A task of that id could only be made once this bundle was gone.
        if (this.#closing || this.#tasks.has(key)) return;
        if (this.#pending.has(key)) continue; // a create of that id is under way: next round
        // Pending while removed, so a create of that id cannot make its own bundle meanwhile.
        this.#pending.add(key);
        try {
          await deleteBundle(bundle);
          return;
        } catch (e) {
          err = e;
        } finally {
          this.#pending.delete(key);
        }
      }
      log.warn("cannot remove bundle", { path: bundle.path, error: String(err) });
    })().finally(() => this.#background.delete(retry));
    this.#background.add(retry);
  }

  #taskClient(conn: ShimConnection, namespace: string): ShimTaskClient {
    return serviceClient(conn.client, Task, {
      defaults: { metadata: { "containerd-namespace-ttrpc": namespace } },
    });
  }

  async #binaryFor(runtime: string): Promise<string> {
    const resolved = resolveRuntime(this.#opts.config, runtime);
    return await resolveShimBinary(resolved.name, resolved.binary);
  }

  /**
   * Deletes task `id` through its shim, then lets go of the shim: a shared
   * one waits for the next task, any other is asked to shut down (a group
   * shim stays while it serves other tasks). Removes the bundle. The shim
   * itself reports the TaskDelete.
   */
  async delete(namespace: string, id: string, trace?: Span): Promise<DeleteResponse> {
    const t = this.get(namespace, id);
    const key = keyOf(namespace, id);
    const resp = await t.task.delete({ id }, trace === undefined ? undefined : { trace });
    if (this.#tasks.get(key) !== t) return resp; // a dead-shim cleanup got there first
    this.#tasks.delete(key);
    const pooled = t.conn.pooled;
    if (pooled === undefined) {
      await t.task.shutdown({ id }, { timeoutMs: 10_000, trace }).catch(() => {});
    }
    this.#release(t.conn, key);
    if (pooled !== undefined) this.#pool.release(pooled);
    const span = trace?.child("bundle remove");
    await t.log.close();
    // The task is deleted: a bundle that cannot be removed yet (no fd to spare) is retried.
    await deleteBundle(t.bundle).catch((err) => this.#removeLater(t.bundle, key, err));
    span?.finish();
    return resp;
  }

  /**
   * Reloads the tasks of an earlier run from the state directory: live
   * shims are reconnected, dead ones cleaned up (their exits published),
   * empty or unusable bundles removed, and stray work directories too.
   * Shared shims are taken back; those left empty are shut down.
   */
  async recover(): Promise<void> {
    const found: Array<[string, string]> = [];
    for (const ns of await dirNames(this.#opts.state)) {
      if (ns.startsWith(".")) continue;
      for (const id of await dirNames(`${this.#opts.state}/${ns}`)) {
        if (!id.startsWith(".")) found.push([ns, id]);
      }
    }
    // Several at a time: a shim that does not answer costs the start one
    // LOAD_TIMEOUT_MS, not one per such shim (containerd#13848).
    let next = 0;
    await Promise.all(Array.from({ length: RECOVER_WIDTH }, async () => {
      while (next < found.length) {
        const [ns, id] = found[next++];
        await this.#recoverOne(ns, id).catch((err) =>
          log.error("cannot reload task", { namespace: ns, id, error: String(err) })
        );
      }
    }));
    for (const ns of await dirNames(this.#opts.root)) {
      for (const id of await dirNames(`${this.#opts.root}/${ns}`)) {
        if (!this.#tasks.has(keyOf(ns, id))) {
          await Deno.remove(`${this.#opts.root}/${ns}/${id}`, { recursive: true }).catch(() => {});
        }
      }
    }
    for (const record of await this.#pool.records()) {
      const conn = this.#conns.get(record.address)?.conn;
      if (conn !== undefined && conn.tasks.size > 0 && !conn.client.closed) {
        conn.pooled = this.#pool.adopt(record, conn.tasks.size);
        continue;
      }
      // Idle when the last daemon died (or dead): shut it down, forget it.
      await this.#retire({ ...record, tasks: 0, retiring: true }).catch(() => {});
      await this.#pool.forget(record.address);
    }
  }

  async #recoverOne(namespace: string, id: string): Promise<void> {
    const bundle = bundleOf(this.#opts.state, namespace, id);
    const entries = await dirNames(bundle.path, true);
    if (entries.length === 0) {
      await deleteBundle(bundle);
      return;
    }
    let binary = await readBundleFile(bundle, "shim-binary-path");
    if (!binary) {
      const runtime = this.#opts.containerRuntime?.(namespace, id);
      try {
        if (runtime === undefined) throw notFound(`container ${id}`);
        binary = await this.#binaryFor(runtime);
      } catch (err) {
        log.warn("removing a bundle whose shim cannot be found", { id, error: String(err) });
        await deleteBundle(bundle);
        return;
      }
    }
    const key = keyOf(namespace, id);
    const shimLog = await openShimLog(bundle.path);
    const address = await readBundleFile(bundle, "address") ?? "";
    let conn: ShimConnection | undefined;
    try {
      if (address === "") throw notFound("no address file");
      conn = await this.#connection(address);
      conn.tasks.add(key);
      const task = this.#taskClient(conn, namespace);
      await task.connect({ id }, { timeoutMs: LOAD_TIMEOUT_MS });
      // A live shim without the task: a daemon died between starting it and
      // its Create (containerd#6860). Undone like a failed create, not kept.
      const state = await task.state({ id }, { timeoutMs: LOAD_TIMEOUT_MS }).catch((err) => {
        if (isCode(err, Code.NotFound)) return undefined;
        throw err;
      });
      if (state === undefined) {
        log.warn("undoing a create the daemon's death cut short", { namespace, id, address });
        await this.#undoCreate(bundle, binary, task, conn, key, shimLog);
        return;
      }
      this.#tasks.set(key, { namespace, id, bundle, binary, task, conn, log: shimLog });
      log.info("reloaded task", { namespace, id, address });
    } catch (err) {
      // Connected, but no answer in time: the shim is alive (stopped, swapped
      // out, overloaded), not dead. Cleaning it up as dead would leave its
      // container running unseen (containerd#13784); waiting for it would hold
      // up the start (containerd#13848). It is reloaded in the background.
      if (conn !== undefined && !conn.client.closed && isCode(err, Code.DeadlineExceeded)) {
        log.warn("shim of task does not answer: reloading it in the background", {
          namespace,
          id,
          address,
        });
        this.#pending.add(key);
        const reload = this.#reloadLater(
          { namespace, id, bundle, binary, log: shimLog, address },
          conn,
        )
          .catch((e) => log.error("cannot reload task", { namespace, id, error: String(e) }))
          .finally(() => {
            this.#pending.delete(key);
            this.#background.delete(reload);
          });
        this.#background.add(reload);
        return;
      }
      log.warn("shim of task is gone", { namespace, id, error: String(err) });
      if (conn !== undefined) this.#release(conn, key);
      await this.#cleanupDeadShim(
        { namespace, id, bundle, binary, log: shimLog, address },
        undefined,
      );
    }
  }

  /**
   * Asks a shim that did not answer at recovery again until it does (then
   * its task is the daemon's as if reloaded at start), its connection
   * closes (then it is cleaned up as a dead shim), or the daemon stops.
   * Its task is pending meanwhile: a create of the same id is AlreadyExists.
   */
  async #reloadLater(t: DeadShim, conn: ShimConnection): Promise<void> {
    const key = keyOf(t.namespace, t.id);
    const task = this.#taskClient(conn, t.namespace);
    while (!this.#closing && !conn.client.closed) {
      try {
        await task.connect({ id: t.id }, { timeoutMs: LOAD_TIMEOUT_MS });
        const state = await task.state({ id: t.id }, { timeoutMs: LOAD_TIMEOUT_MS }).catch(
          (err) => {
            if (isCode(err, Code.NotFound)) return undefined;
            throw err;
          },
        );
        if (this.#closing) break;
        if (state === undefined) {
          log.warn("undoing a create the daemon's death cut short", t);
          await this.#undoCreate(t.bundle, t.binary, task, conn, key, t.log);
          return;
        }
        const { namespace, id, bundle, binary, log: shimLog } = t;
        this.#tasks.set(key, { namespace, id, bundle, binary, task, conn, log: shimLog });
        log.info("reloaded task", { namespace: t.namespace, id: t.id, address: t.address });
        return;
      } catch (err) {
        if (!isCode(err, Code.DeadlineExceeded)) break;
      }
    }
    if (this.#closing) {
      await t.log.close();
      return;
    }
    log.warn("shim of task is gone", { namespace: t.namespace, id: t.id });
    this.#release(conn, key);
    await this.#cleanupDeadShim(t, undefined);
  }

  /** Waits for cleanups of dead shims that are under way. */
  async settle(): Promise<void> {
    while (this.#cleanups.size > 0) await Promise.all([...this.#cleanups]);
  }

  /**
   * Shuts down the shared shims that hold no task now, without waiting out
   * their idle time: the daemon's first step when it stops, while its
   * connections are still served, so that the events such a shim still
   * holds are taken and it exits at once (containerd's shim otherwise tries
   * for 5 s to reach a daemon that is gone, and exits 1).
   */
  async retireIdleShims(): Promise<void> {
    await this.#pool.close();
  }

  /**
   * Lets go of every shim without touching it: shims and their containers
   * keep running, and the next daemon reloads them. Idle shared shims stop.
   */
  async close(): Promise<void> {
    await this.#pool.close();
    this.#closing = true;
    await this.settle();
    for (const e of this.#conns.values()) {
      await e.promise.then((c) => c.client.close(), () => {});
    }
    this.#conns.clear();
    // Closed connections end the reloads still asking a silent shim; retries stop.
    await Promise.all([...this.#background]);
    await Promise.all([...this.#tasks.values()].map((t) => t.log.close()));
    this.#tasks.clear();
  }
}

async function dirNames(path: string, all = false): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(path)) if (all || e.isDirectory) out.push(e.name);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out;
}

/** Removes the socket file of a shim that no longer listens (a shim killed outright leaves it). */
async function removeStaleSocket(address: string): Promise<void> {
  if (!address.startsWith("unix://") && !address.startsWith("/")) return;
  const path = address.replace(/^unix:\/\//, "");
  if (path.startsWith("@") || path === "") return;
  try {
    (await Deno.connect({ transport: "unix", path })).close();
    return; // someone listens: not stale
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
  }
  await Deno.remove(path).catch(() => {});
}

/** Waits for `p`, or `ms` at most. */
async function within(p: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([p, new Promise((r) => timer = setTimeout(r, ms))]);
  clearTimeout(timer);
}

/** Waits up to `ms` for process `pid` to be gone (no /proc entry, or a zombie). */
async function waitGone(pid: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const state = procState(pid);
    if (state === undefined || state === "Z") return;
    await new Promise((r) => setTimeout(r, 20));
  }
}
