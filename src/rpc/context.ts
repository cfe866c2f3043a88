/**
 * What a handler knows about the call it serves, independent of the
 * transport: ttrpc builds it from a request envelope, gRPC from HTTP/2
 * headers, and the handlers stay the same.
 *
 * @module
 */

import type { Span } from "../tracing/mod.ts";

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
  /**
   * The call's span when it is traced (the caller sent a sampled
   * traceparent, or this process samples new traces): handlers pass it on
   * to what they call (`{ trace: ctx.span }`) so those spans nest under it.
   */
  readonly span?: Span;
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
