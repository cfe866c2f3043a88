/**
 * What a handler knows about the call it serves, independent of the
 * transport: ttrpc builds it from a request envelope, a gRPC transport can
 * build the same thing from HTTP/2 headers, and the handlers stay the same.
 *
 * @module
 */

/**
 * Metadata travelling with a call: lower-case keys, each with one or more
 * values, in the order received.
 */
export type Metadata = Map<string, string[]>;

/** Everything a handler may ask about the call it is serving. */
export interface CallContext {
  /** Full service name as the caller addressed it, e.g. "containerd.task.v2.Task". */
  readonly service: string;
  /** Method name, e.g. "State". */
  readonly method: string;
  /** The caller's metadata (keys lower-cased). */
  readonly metadata: Metadata;
  /** Aborted when the deadline passes, the call is cancelled or the connection closes. */
  readonly signal: AbortSignal;
  /** Absolute deadline in ms since the epoch, when the caller set one. */
  readonly deadline?: number;
}

/** The metadata key containerd puts a call's namespace under on ttrpc. */
export const NAMESPACE_METADATA_KEY = "containerd-namespace-ttrpc";

/**
 * The containerd namespace the caller sent with this call, if any.
 *
 * @example
 * ```ts
 * const ns = namespaceOf(ctx) ?? "default";
 * ```
 */
export function namespaceOf(ctx: Pick<CallContext, "metadata">): string | undefined {
  return ctx.metadata.get(NAMESPACE_METADATA_KEY)?.[0];
}

/** Call metadata as callers may write it: a Metadata map or a plain record. */
export type MetadataInit = Metadata | Record<string, string | string[]>;

/** Flattens metadata to wire pairs, lower-casing keys as ttrpc's MD does. */
export function metadataPairs(md: MetadataInit): Array<[string, string]> {
  const out: Array<[string, string]> = [];
  const entries = md instanceof Map ? md.entries() : Object.entries(md);
  for (const [k, v] of entries) {
    const key = k.toLowerCase();
    if (typeof v === "string") out.push([key, v]);
    else for (const one of v) out.push([key, one]);
  }
  return out;
}
