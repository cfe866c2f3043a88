/**
 * The daemon's plugin registry: typed plugins with ids and requirements,
 * initialised in dependency order, each one's outcome (ok, skip, error)
 * kept for introspection. Adding a feature to the daemon is registering a
 * plugin, not editing the server.
 *
 * @example
 * ```ts
 * import { loadPlugins, Registry } from "./mod.ts";
 * const registry = new Registry();
 * registry.register({ type: "io.containerd.content.v1", id: "content", init: (ctx) => openStore(ctx.root) });
 * registry.register({
 *   type: "io.containerd.service.v1", id: "content-service",
 *   requires: ["io.containerd.content.v1"],
 *   init: (ctx) => new ContentService(ctx.first("io.containerd.content.v1")),
 * });
 * const plugins = await loadPlugins(registry, { root: "/var/lib/berth", state: "/run/berth" });
 * ```
 * @module
 */

export {
  type DaemonProperties,
  type InitContext,
  initOrder,
  type LoadedPlugin,
  type LoadOptions,
  loadPlugins,
  type Platform,
  type PluginMeta,
  PluginSet,
  type PluginStatus,
  pluginUri,
  type Registration,
  Registry,
  RequiredPluginError,
  type Requirement,
  requirementsOf,
  SkipPlugin,
} from "./registry.ts";

/** Plugin types, as containerd names them. */
export const PluginType = {
  /** Internal machinery (the GC scheduler, restart monitors). */
  Internal: "io.containerd.internal.v1",
  /** Runtime v2 task managers (shims). */
  RuntimeV2: "io.containerd.runtime.v2",
  /** Services in-process, used by the RPC services. */
  Service: "io.containerd.service.v1",
  /** RPC services served to clients (over ttrpc here, over gRPC too later). */
  GRPC: "io.containerd.grpc.v1",
  /** Services served over ttrpc only (what shims call). */
  TTRPC: "io.containerd.ttrpc.v1",
  Snapshot: "io.containerd.snapshotter.v1",
  Differ: "io.containerd.differ.v1",
  Metadata: "io.containerd.metadata.v1",
  Content: "io.containerd.content.v1",
  GC: "io.containerd.gc.v1",
  Event: "io.containerd.event.v1",
  Lease: "io.containerd.lease.v1",
} as const;
