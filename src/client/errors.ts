/**
 * How the client reports failure: one line (plus a hint) a person can act
 * on, a distinct exit status per gRPC code so scripts can branch on the kind
 * of failure, and a stack trace only with --debug.
 * @module
 */

import { BerthError, Code, codeName, toBerthError } from "../errdefs/mod.ts";

/**
 * Exit status per gRPC code. Small distinct numbers, so they do not clash
 * with the 128+N statuses of a container killed by signal N that `run`
 * passes through.
 */
export const EXIT_STATUS: Readonly<Record<Code, number>> = {
  [Code.OK]: 0,
  [Code.Unknown]: 1,
  [Code.InvalidArgument]: 2,
  [Code.NotFound]: 3,
  [Code.AlreadyExists]: 4,
  [Code.FailedPrecondition]: 5,
  [Code.PermissionDenied]: 6,
  [Code.Unimplemented]: 7,
  [Code.Unavailable]: 8,
  [Code.DeadlineExceeded]: 9,
  [Code.Canceled]: 10,
  [Code.Aborted]: 11,
  [Code.ResourceExhausted]: 12,
  [Code.OutOfRange]: 13,
  [Code.Internal]: 14,
  [Code.DataLoss]: 15,
  [Code.Unauthenticated]: 16,
};

/** The exit status for an error of `code`. */
export function exitStatusFor(code: Code): number {
  return EXIT_STATUS[code] ?? 1;
}

/** An error carrying advice on what to do next, shown under the message. */
export class HintedError extends BerthError {
  /** What the user can do about it. */
  readonly hint: string;

  /** Wraps `code` and `message` with a `hint`. */
  constructor(code: Code, message: string, hint: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.hint = hint;
  }
}

/** Adds a hint to a NotFound error (other errors pass unchanged). */
export function hintNotFound(err: unknown, hint: string): unknown {
  if (err instanceof BerthError && err.code === Code.NotFound && !(err instanceof HintedError)) {
    return new HintedError(err.code, err.message, hint, { cause: err });
  }
  return err;
}

/**
 * Runs `fn` on each of `names` (a delete of several), going on past
 * failures, and reports each failure once: all but the last are printed as
 * they would be shown, the last is thrown (its hint and exit status are the
 * command's). A message that does not name its object gets `unable to
 * delete NAME: ` before it. `hint` may add a hint to an error.
 */
export async function deleteEach(
  names: string[],
  fn: (name: string) => Promise<void>,
  hint: (err: unknown) => unknown = (err) => err,
): Promise<void> {
  let last: unknown;
  for (const name of names) {
    try {
      await fn(name);
    } catch (err) {
      if (last !== undefined) console.error(describeError(last, false));
      const e = hint(err);
      const b = toBerthError(e);
      const message = b.message.includes(name)
        ? b.message
        : `unable to delete ${name}: ${b.message}`;
      last = e instanceof HintedError
        ? new HintedError(b.code, message, e.hint, { cause: e })
        : new BerthError(b.code, message, { cause: e });
    }
  }
  if (last !== undefined) throw last;
}

/** The message shown for `err`; with `debug`, its code and stack trace too. */
export function describeError(err: unknown, debug: boolean): string {
  const e = toBerthError(err);
  let text = `berth: ${e.message}`;
  const hint = err instanceof HintedError ? err.hint : defaultHint(e);
  if (hint) text += `\n${hint}`;
  if (debug) {
    text += `\n(code ${codeName(e.code)}, exit status ${exitStatusFor(e.code)})`;
    const stack = err instanceof Error ? err.stack : undefined;
    if (stack) text += `\n${stack}`;
  }
  return text;
}

function defaultHint(e: BerthError): string {
  switch (e.code) {
    case Code.Unimplemented:
      return "this berth daemon does not offer that yet; see `berth plugins ls` for what it serves";
    case Code.DeadlineExceeded:
      return "the command ran out of time; raise --timeout or check the daemon's log";
    case Code.PermissionDenied:
      return "run as the user the daemon runs as (usually root)";
    default:
      return "";
  }
}
