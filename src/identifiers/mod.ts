/**
 * The one validator for names that become paths, keys or database rows:
 * namespaces, containers, leases, snapshotter names. It follows
 * containerd's rules so that an id accepted by one runtime is accepted by
 * the other, and so that no id can smuggle `/` or `..` into a path.
 *
 * @example
 * ```ts
 * import { validateIdentifier } from "./mod.ts";
 * validateIdentifier("redis-1"); // ok
 * validateIdentifier("../etc"); // throws BerthError(InvalidArgument)
 * ```
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** Longest identifier accepted, in characters (containerd's limit). */
export const MAX_IDENTIFIER_LENGTH = 76;

// Alphanumeric runs joined by single `.`, `_` or `-`: no leading or trailing
// separator, no two in a row, so `..` and `/` can never appear.
const IDENTIFIER_RE = /^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$/;

/** True when `id` is a valid identifier (see {@link validateIdentifier}). */
export function isValidIdentifier(id: string): boolean {
  return id.length > 0 && id.length <= MAX_IDENTIFIER_LENGTH && IDENTIFIER_RE.test(id);
}

/**
 * Throws InvalidArgument unless `id` is 1 to 76 characters of
 * `[A-Za-z0-9]` runs joined by single `.`, `_` or `-`.
 * `kind` names what the id is for, e.g. "namespace", to make the message useful.
 */
export function validateIdentifier(id: string, kind = "identifier"): void {
  if (id.length === 0) throw invalidArgument(`${kind} must not be empty`);
  if (id.length > MAX_IDENTIFIER_LENGTH) {
    throw invalidArgument(
      `${kind} ${JSON.stringify(id)} is longer than ${MAX_IDENTIFIER_LENGTH} characters`,
    );
  }
  if (!IDENTIFIER_RE.test(id)) {
    throw invalidArgument(
      `${kind} ${JSON.stringify(id)} must be letters and digits joined by single ".", "_" or "-" ` +
        `(no "/", no "..", no leading or trailing separator)`,
    );
  }
}
