/**
 * ttrpc, the small RPC protocol containerd speaks with its shims: a server
 * that serves protobuf-es service descriptors and a client with typed
 * per-service stubs, both wire-compatible with Go's github.com/containerd/ttrpc
 * (unary and v1.2 streaming).
 *
 * @example
 * ```ts
 * import { connect, Server, serviceClient } from "./mod.ts";
 * const server = new Server();
 * server.register(Task, { state: (req) => ({ id: req.id }) });
 * await server.listen(path);
 * const client = await connect(path);
 * const task = serviceClient(client, Task);
 * await task.state({ id: "x" }, { timeoutMs: 1000 });
 * ```
 * @module
 */

export { Server, type ServerOptions, type ShutdownOptions } from "./server.ts";
export {
  type CallOptions,
  Client,
  type ClientOptions,
  type ClientStream,
  connect,
  type StreamKind,
} from "./client.ts";
export {
  type ClientMethod,
  type ServiceClient,
  serviceClient,
  type ServiceClientOptions,
} from "./stubs.ts";
export { MAX_MESSAGE_LENGTH } from "./channel.ts";
export {
  type PeerCred,
  type PeerCredReader,
  requireSameUser,
  sameUserOnly,
  type SameUserOptions,
} from "./peercred.ts";
