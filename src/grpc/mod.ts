/**
 * gRPC over cleartext HTTP/2 on a unix socket (and on TCP, plaintext or
 * TLS, when configured): how containerd's own clients (ctr, the Go client
 * library) reach the daemon. The services and handlers are the ttrpc
 * server's; only the transport differs.
 *
 * @example
 * ```ts
 * const server = new GrpcServer();
 * server.register(Version, { version: () => ({ version: "1" }) });
 * await server.listen("/run/berth/berth.sock");
 * ```
 * @module
 */

export { GrpcServer, type GrpcServerOptions, type TcpListenOptions } from "./server.ts";
export { type GrpcCallOptions, GrpcClient, type GrpcClientOptions, pathOf } from "./client.ts";
export {
  decodeStatusMessage,
  encodeStatusMessage,
  formatTimeout,
  frameMessage,
  MAX_GRPC_MESSAGE,
  MessageReader,
  parseTimeout,
} from "./framing.ts";
