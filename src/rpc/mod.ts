/**
 * What berth's two RPC transports share, so that neither sits on the other:
 * the service registry and handler types, the call context, status <-> error
 * mapping, the inbound stream queue, the batched writer, and the private
 * unix-socket listener with its accept loop. src/ttrpc and src/grpc are the
 * transports; both import from here.
 *
 * @example
 * ```ts
 * const set = new ServiceSet();
 * set.register(Version, { version: () => ({ version: "1" }) });
 * const { listener, removeFile } = await listenPrivate(path);
 * ```
 * @module
 */

export { BatchWriter, type ByteSink } from "./batch.ts";
export { type CallContext, type Metadata, type MetadataInit, metadataPairs } from "./context.ts";
export {
  acceptEach,
  isClosedError,
  listenPrivate,
  type PrivateSocket,
  removeStaleSocket,
} from "./listen.ts";
export { MessageQueue } from "./queue.ts";
export {
  type Answer,
  type BidiStreamingHandler,
  type CallObserver,
  callUnary,
  type ClientStreamingHandler,
  decodeInput,
  encodeOutput,
  isThenable,
  type MethodEntry,
  type MethodHandler,
  type RegisterOptions,
  ServedCall,
  type ServerStreamingHandler,
  type ServiceImpl,
  ServiceSet,
  type UnaryHandler,
} from "./services.ts";
export { errorFromStatus, type Status, statusFromError } from "./status.ts";
export { callSpan } from "./tracing.ts";
