/**
 * What every RPC service of the daemon shares: how a service plugin offers
 * itself to a transport, and how a call's namespace is read. A service is a
 * plain implementation object (handlers taking the request and a
 * {@link CallContext}); the ttrpc and the gRPC server register the very
 * same object, since only the transport differs.
 *
 * @module
 */

import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { type Timestamp, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { CallContext, RegisterOptions, ServiceImpl } from "../rpc/mod.ts";

/** The transports the daemon serves its API on. */
export type Transport = "ttrpc" | "grpc";

/** Anything services can be registered with: the ttrpc server or the gRPC server. */
export interface ServiceRegistrar {
  register<S extends GenService<GenServiceMethods>>(
    service: S,
    impl: ServiceImpl<S>,
    opts?: RegisterOptions,
  ): void;
}

/**
 * The instance a service plugin (type io.containerd.grpc.v1 or
 * io.containerd.ttrpc.v1) returns: it registers its implementations with
 * whichever server the daemon runs.
 */
export interface RPCService {
  /** Registers this plugin's services on `server`, which speaks `transport`. */
  registerOn(server: ServiceRegistrar, transport: Transport): void;
}

/** True when a plugin instance is an {@link RPCService}. */
export function isRPCService(x: unknown): x is RPCService {
  return typeof (x as RPCService | null)?.registerOn === "function";
}

/** An {@link RPCService} serving one implementation of `service` on every transport. */
export function rpcService<S extends GenService<GenServiceMethods>>(
  service: S,
  impl: ServiceImpl<S>,
): RPCService & { impl: ServiceImpl<S> } {
  return { impl, registerOn: (server) => server.register(service, impl) };
}

/** The metadata key containerd's clients name the lease a call works under. */
export const LEASE_KEY = "containerd-lease";

/** The lease the call works under, if any (what it creates is then held by that lease). */
export function leaseOf(ctx: Pick<CallContext, "metadata">): string | undefined {
  return ctx.metadata.get(LEASE_KEY)?.[0] || undefined;
}

/**
 * What the services need of the garbage collector: a collection now (for
 * deletes with `sync`). Scheduled collections after deletes are the
 * collector's own business (it watches the metadata database).
 */
export interface Collector {
  collect(): Promise<unknown>;
}

/** A store's Date as a protobuf Timestamp. */
export function toTimestamp(d: Date): Timestamp {
  return timestampFromDate(d);
}

/** The paths of an update mask (none: an empty list, meaning "replace what may be replaced"). */
export function maskPaths(mask: { paths: string[] } | undefined): string[] {
  return mask?.paths ?? [];
}
