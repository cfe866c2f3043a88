/**
 * One vocabulary of error kinds for all of berth, each carrying its gRPC
 * status code, so that stores, services and transports agree on what went
 * wrong. Transports (ttrpc, gRPC) map {@link BerthError} to a status at the
 * edge; stores throw it without knowing about transports.
 *
 * @example
 * ```ts
 * import { notFound, isCode, Code } from "./mod.ts";
 * try { throw notFound("container c1"); } catch (e) { isCode(e, Code.NotFound); }
 * ```
 * @module
 */

// errno.ts alone (no imports): every mode loads errdefs, not all of ffi.
import { errnoName } from "../../ffi/errno.ts";

/** Canonical gRPC status codes (the same numbers on ttrpc and gRPC). */
export enum Code {
  OK = 0,
  Canceled = 1,
  Unknown = 2,
  InvalidArgument = 3,
  DeadlineExceeded = 4,
  NotFound = 5,
  AlreadyExists = 6,
  PermissionDenied = 7,
  ResourceExhausted = 8,
  FailedPrecondition = 9,
  Aborted = 10,
  OutOfRange = 11,
  Unimplemented = 12,
  Internal = 13,
  Unavailable = 14,
  DataLoss = 15,
  Unauthenticated = 16,
}

/** The one error type of berth: a message for people and a gRPC code. */
export class BerthError extends Error {
  /** The gRPC status code this error travels as. */
  readonly code: Code;

  /** Makes an error of kind `code`; `cause` keeps the underlying error. */
  constructor(code: Code, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "BerthError";
    this.code = code;
  }
}

/** The name of a code as gRPC spells it in text, e.g. "NotFound". */
export function codeName(code: Code): string {
  return Code[code] ?? `Code(${code})`;
}

/** True when `err` is a {@link BerthError} of the given code. */
export function isCode(err: unknown, code: Code): boolean {
  return err instanceof BerthError && err.code === code;
}

/** `what` does not exist, e.g. `notFound("container \"c1\"")`. */
export function notFound(what: string): BerthError {
  return new BerthError(Code.NotFound, `${what}: not found`);
}

/** `what` already exists. */
export function alreadyExists(what: string): BerthError {
  return new BerthError(Code.AlreadyExists, `${what}: already exists`);
}

/** The caller sent something malformed. */
export function invalidArgument(message: string): BerthError {
  return new BerthError(Code.InvalidArgument, message);
}

/** The call is valid but the object is in the wrong state for it. */
export function failedPrecondition(message: string): BerthError {
  return new BerthError(Code.FailedPrecondition, message);
}

/** The feature is not built (yet), said plainly. */
export function unimplemented(message: string): BerthError {
  return new BerthError(Code.Unimplemented, message);
}

/** A peer or resource cannot be reached now; retrying may help. */
export function unavailable(message: string, cause?: unknown): BerthError {
  return new BerthError(Code.Unavailable, message, { cause });
}

/** The call was cancelled by its caller. */
/** DeadlineExceeded: the call's time ran out. */
export function deadlineExceeded(message: string): BerthError {
  return new BerthError(Code.DeadlineExceeded, message);
}

export function canceled(message = "canceled"): BerthError {
  return new BerthError(Code.Canceled, message);
}

/** A bug or an unexpected failure inside berth. */
export function internal(message: string, cause?: unknown): BerthError {
  return new BerthError(Code.Internal, message, { cause });
}

/**
 * Turns any thrown value into a {@link BerthError}: BerthErrors pass through,
 * Deno's file-system errors get their natural code (by class, else by the
 * errno name in their `code`), anything else is Unknown.
 * Errors from libc calls carry an errno (see ffi/); their code comes from
 * {@link codeForErrno}.
 */
export function toBerthError(err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  const message = err instanceof Error ? err.message : String(err);
  if (err instanceof Deno.errors.NotFound) {
    return new BerthError(Code.NotFound, message, { cause: err });
  }
  if (err instanceof Deno.errors.AlreadyExists) {
    return new BerthError(Code.AlreadyExists, message, { cause: err });
  }
  if (err instanceof Deno.errors.PermissionDenied) {
    return new BerthError(Code.PermissionDenied, message, { cause: err });
  }
  if (err instanceof Deno.errors.InvalidData) {
    return new BerthError(Code.InvalidArgument, message, { cause: err });
  }
  if (err instanceof Deno.errors.TimedOut) {
    return new BerthError(Code.DeadlineExceeded, message, { cause: err });
  }
  const errno = (err as { errno?: unknown })?.errno;
  if (typeof errno === "number") {
    return new BerthError(codeForErrno(errno), message, { cause: err });
  }
  // Deno's other I/O errors name their errno in `code` (a full disk is a
  // plain Error with code "ENOSPC"): ResourceExhausted, not Unknown.
  const name = (err as { code?: unknown })?.code;
  if (typeof name === "string" && ERRNO_CODES[name] !== undefined) {
    return new BerthError(ERRNO_CODES[name], message, { cause: err });
  }
  return new BerthError(Code.Unknown, message, { cause: err });
}

/** The gRPC code that best describes a failed system call's errno. */
export function codeForErrno(errno: number): Code {
  return ERRNO_CODES[errnoName(errno)] ?? Code.Unknown;
}

// By name: the numbers live in ffi/errno.ts alone.
const ERRNO_CODES: Readonly<Record<string, Code>> = {
  ENOENT: Code.NotFound,
  ESRCH: Code.NotFound,
  ECHILD: Code.NotFound,
  EEXIST: Code.AlreadyExists,
  EPERM: Code.PermissionDenied,
  EACCES: Code.PermissionDenied,
  EINVAL: Code.InvalidArgument,
  EBADF: Code.InvalidArgument,
  EBUSY: Code.FailedPrecondition,
  ENOSYS: Code.Unimplemented,
  EOPNOTSUPP: Code.Unimplemented,
  ETIMEDOUT: Code.DeadlineExceeded,
  ENOSPC: Code.ResourceExhausted,
  EMFILE: Code.ResourceExhausted,
};
