/**
 * `berth daemon`: the long-lived process. It locks its root, loads its
 * plugins (stores, the event exchange, services) and serves containerd's
 * v1 services over gRPC at `<address>` (and on TCP when configured) and
 * over ttrpc at `<address>.ttrpc`.
 *
 * @example
 * ```ts
 * import { startDaemon } from "./mod.ts";
 * import { loadConfig } from "../config/mod.ts";
 * const { config } = await loadConfig(undefined, { root: "/tmp/r", state: "/tmp/s", address: "/tmp/s/b.sock" });
 * const daemon = await startDaemon(config);
 * // ...
 * await daemon.stop();
 * ```
 * @module
 */

export { type RunningDaemon, startDaemon, type StartOptions } from "./daemon.ts";
export { LOCK_FILE, lockRoot, type RootLock } from "./lock.ts";
export { builtinPlugins } from "./plugins.ts";
