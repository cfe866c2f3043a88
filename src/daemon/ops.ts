/**
 * The daemon's operability endpoints, each off unless configured: metrics
 * (`[metrics] address`) and the debug socket (`[debug] address`). Their
 * modules are imported only when configured, and the RPC servers get a call
 * observer only then, so an unconfigured daemon pays nothing per call.
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { type Config, parseTcpAddress } from "../config/mod.ts";
import { MetricsSchema } from "../gen/containerd/cgroups/v1/metrics_pb.ts";
import { log } from "../log/mod.ts";
import type { Metadata } from "../metadata/mod.ts";
import type { TaskMetrics } from "../metrics/mod.ts";
import type { PluginSet } from "../plugin/mod.ts";
import type { CallObserver } from "../rpc/mod.ts";

/** What the daemon wires in: observers for its servers, then the endpoints once plugins exist. */
export interface Operability {
  /** Observer for the ttrpc server, when something observes. */
  readonly ttrpc: CallObserver | undefined;
  /** Observer for the gRPC server, when something observes. */
  readonly grpc: CallObserver | undefined;
  /** Starts listening; `plugins` answer the metrics' task questions. */
  serve(plugins: PluginSet): Promise<void>;
  /** Stops listening. */
  close(): Promise<void>;
}

function both(a: CallObserver | undefined, b: CallObserver | undefined): CallObserver | undefined {
  if (a === undefined || b === undefined) return a ?? b;
  return (entry) => {
    const endA = a(entry);
    const endB = b(entry);
    return (code) => {
      endA(code);
      endB(code);
    };
  };
}

const V1_METRICS = "io.containerd.cgroups.v1.Metrics";

/**
 * What metrics need of the runtime plugin's task manager (its shape, so
 * this module stays out of the daemon <-> runtime import cycle).
 */
interface TaskLister {
  list(namespace: string): Array<{
    id: string;
    namespace: string;
    task: {
      stats(
        req: { id: string },
        opts: { timeoutMs: number },
      ): Promise<{ stats?: { typeUrl: string; value: Uint8Array } }>;
    };
  }>;
}

/** Every task's cgroup v1 figures, asked of its shim now (tasks that are gone are skipped). */
async function gatherTasks(plugins: PluginSet): Promise<TaskMetrics[]> {
  const md = plugins.first<Metadata>("io.containerd.metadata.v1");
  const manager = plugins.first<TaskLister>("io.containerd.runtime.v2");
  const tasks = md.namespaces.list().flatMap((ns) => manager.list(ns.name));
  const got = await Promise.all(tasks.map(async (t) => {
    try {
      const { stats } = await t.task.stats({ id: t.id }, { timeoutMs: 5_000 });
      // cgroup v2 figures have other names in containerd (its v2 collector): not exposed yet.
      if (stats === undefined || !stats.typeUrl.endsWith(V1_METRICS)) return undefined;
      return { id: t.id, namespace: t.namespace, metrics: fromBinary(MetricsSchema, stats.value) };
    } catch {
      return undefined;
    }
  }));
  return got.filter((t) => t !== undefined);
}

/** Prepares what `cfg` configures; nothing is imported or listening for what it does not. */
export async function operability(cfg: Config): Promise<Operability> {
  let plugins: PluginSet | undefined;
  const metrics = cfg.metrics.address === "" ? undefined : new (await import("../metrics/mod.ts"))
    .MetricsEndpoint({
    histogram: cfg.metrics.grpc_histogram,
    tasks: () => plugins === undefined ? Promise.resolve([]) : gatherTasks(plugins),
  });
  const debug = cfg.debug.address === ""
    ? undefined
    : new (await import("../debug/mod.ts")).DebugEndpoint();
  return {
    ttrpc: both(metrics?.ttrpc.observe, debug?.inflight.observer("ttrpc")),
    grpc: both(metrics?.grpc.observe, debug?.inflight.observer("grpc")),
    async serve(p) {
      plugins = p;
      if (metrics !== undefined) {
        const { hostname, port } = parseTcpAddress(cfg.metrics.address);
        const addr = await metrics.listen(hostname, port);
        log.info("serving metrics", { address: `${addr.hostname}:${addr.port}` });
      }
      if (debug !== undefined) {
        await debug.listen(
          cfg.debug.address.replace(/^unix:\/\//, ""),
          cfg.debug.uid,
          cfg.debug.gid,
        );
        log.info("serving the debug socket", { address: cfg.debug.address });
      }
    },
    async close() {
      await metrics?.close();
      await debug?.close();
    },
  };
}
