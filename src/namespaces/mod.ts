/**
 * The namespace a call works in, as containerd's namespaces package has it:
 * it travels in the call's metadata, under one key on gRPC and another on
 * ttrpc, never as an extra request field. Clients put it there with the key
 * of their transport; services read it with {@link namespaceOf}.
 *
 * @example
 * ```ts
 * const client = await connect(path, { defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: "default" } } });
 * // in a handler:
 * const ns = namespaceRequired(ctx);
 * ```
 * @module
 */

import { failedPrecondition } from "../errdefs/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";

/** The metadata key containerd's gRPC clients send the namespace under. */
export const GRPC_NAMESPACE_KEY = "containerd-namespace";
/** The metadata key containerd's ttrpc clients send the namespace under. */
export const TTRPC_NAMESPACE_KEY = "containerd-namespace-ttrpc";

/** What the namespace is read from: a call's metadata (lower-case keys). */
export interface WithMetadata {
  readonly metadata: Map<string, string[]>;
}

/** The namespace the caller named, if any (gRPC's key first, then ttrpc's, as containerd reads them). */
export function namespaceOf(ctx: WithMetadata): string | undefined {
  return ctx.metadata.get(GRPC_NAMESPACE_KEY)?.[0] ?? ctx.metadata.get(TTRPC_NAMESPACE_KEY)?.[0];
}

/**
 * The call's namespace, as containerd requires it: missing is
 * FailedPrecondition, malformed is InvalidArgument.
 */
export function namespaceRequired(ctx: WithMetadata): string {
  const ns = namespaceOf(ctx);
  if (ns === undefined || ns === "") throw failedPrecondition("namespace is required");
  validateIdentifier(ns, "namespace");
  return ns;
}
