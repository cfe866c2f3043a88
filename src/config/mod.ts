/**
 * The daemon's configuration in containerd's config.toml shape (version 2):
 * defaults, loading with flag overrides, TOML output for `berth config
 * default|dump`, and lookups (ttrpc address, runtimes, default snapshotter,
 * the CRI plugin's registry mirrors and per-host settings).
 *
 * @example
 * ```ts
 * import { loadConfig, ttrpcAddress } from "./mod.ts";
 * const { config, warnings } = await loadConfig("/etc/berth/config.toml", { root: "/tmp/r" });
 * ttrpcAddress(config); // "/run/berth/berth.sock.ttrpc"
 * ```
 * @module
 */

export {
  applyOverrides,
  type Config,
  type ConfigOverrides,
  configToToml,
  CRI_SECTION,
  DEFAULT_RUNTIME,
  defaultConfig,
  defaultSnapshotter,
  DESCRIBED_PLUGIN_SECTIONS,
  effectiveConfig,
  loadConfig,
  type LoadedConfig,
  parseConfig,
  parseDuration,
  parseTcpAddress,
  registryConfig,
  type ResolvedRuntime,
  resolveRuntime,
  type RuntimeEntry,
  shimBinaryName,
  type TcpAddress,
  tracingSettings,
  ttrpcAddress,
} from "./config.ts";
export { keyPath } from "./shape.ts";
export {
  type RegistryAuth,
  type RegistryConfig,
  registryFromSection,
  type RegistryHostConfig,
  type RegistryTls,
} from "./registry.ts";
