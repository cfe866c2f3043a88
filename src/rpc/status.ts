/**
 * Errors at the transport edge: any thrown value becomes a status (gRPC code
 * and message) on the way out, and a non-OK status becomes a
 * {@link BerthError} with the same code and message on the way in.
 *
 * @module
 */

import { BerthError, Code, toBerthError } from "../errdefs/mod.ts";

/** A call's outcome as it travels: a gRPC code and a message for people. */
export interface Status {
  /** gRPC status code (0 is OK). */
  code: number;
  /** Human-readable message; empty when OK. */
  message: string;
}

/** The status a failed handler's error travels as (errdefs decides the code). */
export function statusFromError(err: unknown): Status {
  const e = toBerthError(err);
  return { code: e.code, message: e.message };
}

/** The error a caller sees for a non-OK status received from a peer. */
export function errorFromStatus(code: number, message: string): BerthError {
  // Codes outside the known range still reach the caller, as Unknown.
  const known = Number.isInteger(code) && code > 0 && code <= Code.Unauthenticated;
  // A stack here would only show the client's frame reader, never the
  // caller; capturing it was a large share of a failed call's cost.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return new BerthError(known ? code as Code : Code.Unknown, message);
  } finally {
    Error.stackTraceLimit = limit;
  }
}
