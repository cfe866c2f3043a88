/**
 * berth's runtime v2: tasks run by shims that the daemon starts, talks to
 * over ttrpc, reloads after its own restart and cleans up after when they
 * die, all as containerd's runtime v2 does, so berth's shim and Debian's
 * containerd-shim-runc-v2 are driven alike. Containers share shims by
 * default (pool.ts): most container starts start no shim process at all.
 *
 * @example
 * ```ts
 * import { TaskManager } from "./mod.ts";
 * const m = new TaskManager({ root, state, env, events, config });
 * await m.recover();
 * const { pid } = await m.create("default", "web", { spec, runtime: "io.containerd.runc.v2", rootfs, stdin: "", stdout, stderr: "", terminal: false });
 * await m.get("default", "web").task.start({ id: "web" });
 * ```
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import type { Exchange } from "../events/mod.ts";
import type { Metadata } from "../metadata/mod.ts";
import { DEFAULT_PLATFORM } from "../platforms/mod.ts";
import { daemonProperties, type Registration } from "../plugin/mod.ts";
import { parseDuration, tracingSettings } from "../config/mod.ts";
import { settingsEnv } from "../tracing/mod.ts";
import { berthDirs, type ShimEnvironment, shimSocketDir } from "./binary.ts";
import { DEFAULT_SHIM_IDLE_MS, TaskManager } from "./manager.ts";

export {
  type CreateTaskOptions,
  type ShimTask,
  type ShimTaskClient,
  TaskManager,
  type TaskManagerOptions,
} from "./manager.ts";
export {
  berthDirs,
  deleteShimBinary,
  parseShimAddress,
  resolveShimBinary,
  type ShimEnvironment,
  shimSocketDir,
  startShimBinary,
} from "./binary.ts";
export { type Bundle, bundleOf, createBundle, deleteBundle } from "./bundle.ts";
export { openShimLog, type ShimLog } from "./shim_log.ts";
export { configRuntimeOptions } from "./options.ts";

/**
 * The program shims run to publish events: berth itself when compiled, else
 * the checkout's built bin/berth when there is one, else the Deno binary
 * (Go shims publish over TTRPC_ADDRESS and only fall back to it).
 */
function publishBinary(): string {
  if (Deno.build.standalone) return Deno.execPath();
  for (const dir of berthDirs()) {
    try {
      if (Deno.statSync(`${dir}/berth`).isFile) return `${dir}/berth`;
    } catch { /* not built */ }
  }
  return Deno.execPath();
}

/**
 * The task manager plugin, io.containerd.runtime.v2.task: bundles under
 * `<state>/io.containerd.runtime.v2.task`, work directories under
 * `<root>/io.containerd.runtime.v2.task`; reloads earlier tasks at start.
 */
export const taskManagerPlugin: Registration<TaskManager> = {
  type: "io.containerd.runtime.v2",
  id: "task",
  requires: ["io.containerd.metadata.v1", "io.containerd.event.v1"],
  init: async (ctx) => {
    const props = daemonProperties(ctx);
    const md = ctx.first<Metadata>("io.containerd.metadata.v1");
    const level = props.config.debug.level;
    const cfg = ctx.config as {
      shim_group_size?: number;
      shim_idle_timeout?: string;
      shim_socket_dir?: string;
    };
    const env: ShimEnvironment = {
      address: props.address,
      ttrpcAddress: props.ttrpcAddress,
      publishBinary: publishBinary(),
      debug: level === "debug" || level === "trace",
      socketDir: shimSocketDir(props.config.state, cfg.shim_socket_dir),
      tracing: settingsEnv(tracingSettings(props.config)),
    };
    const groupSize = cfg.shim_group_size ?? 0;
    if (!Number.isInteger(groupSize) || groupSize < 0) {
      throw invalidArgument(
        `plugins."${ctx.uri}".shim_group_size: want a whole number >= 0, got ${groupSize}`,
      );
    }
    const idleMs = cfg.shim_idle_timeout === undefined
      ? DEFAULT_SHIM_IDLE_MS
      : parseDuration(cfg.shim_idle_timeout, `plugins."${ctx.uri}".shim_idle_timeout`);
    await Deno.mkdir(ctx.root, { recursive: true, mode: 0o711 });
    await Deno.mkdir(ctx.state, { recursive: true, mode: 0o711 });
    ctx.meta.exports.root = ctx.root;
    ctx.meta.exports.state = ctx.state;
    ctx.meta.platforms.push({ ...DEFAULT_PLATFORM });
    const manager = new TaskManager({
      root: ctx.root,
      state: ctx.state,
      env,
      events: ctx.first<Exchange>("io.containerd.event.v1"),
      config: props.config,
      shimGroupSize: groupSize,
      shimIdleMs: idleMs,
      containerRuntime: (ns, id) => {
        try {
          return md.containers.get(ns, id).runtime.name;
        } catch {
          return undefined;
        }
      },
    });
    await manager.recover();
    return manager;
  },
  close: (m) => m.close(),
};
