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
  daemonProperties,
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
