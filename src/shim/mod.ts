/**
 * berth's containerd runtime v2 shim over runc (`berth shim`,
 * `containerd-shim-berth-v2`): the `start`, `delete` and `serve` actions,
 * the Task service and its container/process model.
 *
 * @example
 * ```ts
 * import { parseShimFlags, startShim } from "./mod.ts";
 * const address = await startShim(parseShimFlags(["-namespace", "default", "-id", "c1", "-address", "/run/containerd/containerd.sock", "start"]));
 * ```
 * @module
 */

export { formatShimFlags, parseShimFlags, type ShimFlags } from "./flags.ts";
export { groupOf, startShim } from "./start.ts";
export { deleteAfterDeadShim } from "./delete.ts";
export { serveShim } from "./serve.ts";
export { DEFAULT_SOCKET_DIR, socketDir, socketPath } from "./socket.ts";
export { TaskService } from "./service.ts";
