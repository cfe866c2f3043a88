/**
 * berth's CNI client: the CNI 1.0.0 exec protocol written here (plugins run
 * through src/spawn with CNI_* variables, config on stdin, result or error
 * JSON on stdout), network configuration loaded from a directory as
 * containerd's CRI plugin does, and each pod's attachment saved so that DEL
 * replays exactly what ADD used. The CRI plugin uses {@link CniManager};
 * network namespaces themselves are src/netns's.
 *
 * @example
 * ```ts
 * import { CniManager } from "./mod.ts";
 * import { createNetns, removeNetns } from "../netns/mod.ts";
 * const cni = new CniManager({ confDir: "/etc/cni/net.d", stateDir: "/var/lib/berth/cni" });
 * if ((await cni.status()).ready) {
 *   const ns = await createNetns("/var/run/berth/netns");
 *   const { ips } = await cni.setup("pod1", ns, { podName: "web", podNamespace: "default" });
 *   await cni.teardown("pod1", ns);
 *   await removeNetns(ns);
 * }
 * ```
 * @module
 */

export { CniManager, DEFAULT_BIN_DIRS } from "./manager.ts";
export type {
  Bandwidth,
  CniManagerOptions,
  Dns,
  PortMapping,
  SetupOptions,
  SetupResult,
} from "./manager.ts";
export type { InterfaceInfo, IpConfig } from "./result.ts";
export { loadNetwork, NotInitializedError } from "./config.ts";
export type { NetworkList, PluginConfig } from "./config.ts";
export { pluginVersions } from "./exec.ts";
