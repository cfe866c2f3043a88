/**
 * A small description language for the config file's structure, and the one
 * function that checks a parsed TOML document against it while merging it
 * over the defaults. Wrong types are errors naming the key; keys berth does
 * not know are warnings, so a containerd config.toml loads with notes
 * rather than failing.
 *
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** What a value in the config may be. */
export type Shape =
  | { kind: "string" }
  | { kind: "int" }
  | { kind: "number" }
  | { kind: "bool" }
  | { kind: "list"; of: Shape }
  /** Fixed keys; `other` (when set) accepts and keeps any further key. */
  | { kind: "table"; fields: Record<string, Shape>; other?: Shape }
  /** Any keys, each value of one shape; `entry` fills keys a new entry leaves out. */
  | { kind: "map"; of: Shape; entry?: Record<string, unknown> }
  /** Free-form (shim options, sections of plugins the config does not describe). */
  | { kind: "any" }
  /** A containerd key berth accepts but does not act on: kept out, with a warning. */
  | { kind: "ignored"; why: string };

/** Shape of a text value. */
export const str: Shape = { kind: "string" };
/** Shape of an integer value. */
export const int: Shape = { kind: "int" };
/** Shape of any number. */
export const num: Shape = { kind: "number" };
/** Shape of a boolean. */
export const bool: Shape = { kind: "bool" };
/** Shape of a free-form value. */
export const any: Shape = { kind: "any" };

/** Shape of a list whose elements have shape `of`. */
export function list(of: Shape): Shape {
  return { kind: "list", of };
}

/** Shape of a table with known `fields` (and, with `other`, open to more). */
export function table(fields: Record<string, Shape>, other?: Shape): Shape {
  return { kind: "table", fields, other };
}

/** Shape of a table with arbitrary keys whose values have shape `of`. */
export function map(of: Shape, entry?: Record<string, unknown>): Shape {
  return { kind: "map", of, entry };
}

/** Shape of a containerd key berth does not act on (`why` goes in the warning). */
export function ignored(why: string): Shape {
  return { kind: "ignored", why };
}

/** Spells a key path as TOML would: `plugins."io.containerd.gc.v1.scheduler".pause_threshold`. */
export function keyPath(path: readonly string[]): string {
  let out = "";
  for (const k of path) {
    if (/^\[\d+\]$/.test(k)) out += k; // a list index, as in `disabled_plugins[1]`
    else out += (out === "" ? "" : ".") + (/^[A-Za-z0-9_-]+$/.test(k) ? k : JSON.stringify(k));
  }
  return out;
}

function describe(v: unknown): string {
  if (Array.isArray(v)) return "an array";
  if (v === null || v === undefined) return "nothing";
  if (typeof v === "object") return v instanceof Date ? "a date" : "a table";
  if (typeof v === "string") return `the string ${JSON.stringify(v)}`;
  return `${typeof v} ${String(v)}`;
}

function isTable(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === "object" && !Array.isArray(v) && !(v instanceof Date);
}

/** Deep copy of a plain TOML value (tables become ordinary objects). */
function plain(v: unknown): unknown {
  if (Array.isArray(v)) return v.map(plain);
  if (isTable(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v)) out[k] = plain(x);
    return out;
  }
  return v;
}

/**
 * Checks `value` against `shape` and merges it over `defaults`: tables key
 * by key, maps entry by entry, everything else replaced. Throws
 * InvalidArgument naming the key on a wrong type; pushes a message to
 * `warnings` for each unknown or ignored key.
 */
export function merge(
  defaults: unknown,
  value: unknown,
  shape: Shape,
  path: string[],
  warnings: string[],
): unknown {
  const wrong = (expected: string) =>
    invalidArgument(`${keyPath(path)}: expected ${expected}, got ${describe(value)}`);
  switch (shape.kind) {
    case "string":
      if (typeof value !== "string") throw wrong("a string");
      return value;
    case "int":
      if (typeof value !== "number" || !Number.isInteger(value)) throw wrong("an integer");
      return value;
    case "number":
      if (typeof value !== "number") throw wrong("a number");
      return value;
    case "bool":
      if (typeof value !== "boolean") throw wrong("a boolean (true or false)");
      return value;
    case "any":
      return plain(value);
    case "ignored":
      warnings.push(`${keyPath(path)}: ${shape.why}; ignored`);
      return undefined;
    case "list":
      if (!Array.isArray(value)) throw wrong("an array");
      return value.map((v, i) => merge(undefined, v, shape.of, [...path, `[${i}]`], warnings));
    case "table": {
      if (!isTable(value)) throw wrong("a table");
      const base = isTable(defaults) ? defaults : {};
      const out: Record<string, unknown> = { ...(plain(base) as Record<string, unknown>) };
      for (const [k, v] of Object.entries(value)) {
        const sub = Object.hasOwn(shape.fields, k) ? shape.fields[k] : shape.other;
        if (sub === undefined) {
          warnings.push(`${keyPath([...path, k])}: unknown key; ignored`);
          continue;
        }
        const merged = merge(base[k], v, sub, [...path, k], warnings);
        if (merged !== undefined) out[k] = merged;
      }
      return out;
    }
    case "map": {
      if (!isTable(value)) throw wrong("a table");
      const base = isTable(defaults) ? defaults : {};
      const out: Record<string, unknown> = { ...(plain(base) as Record<string, unknown>) };
      for (const [k, v] of Object.entries(value)) {
        const merged = merge(base[k] ?? shape.entry, v, shape.of, [...path, k], warnings);
        if (merged !== undefined) out[k] = merged;
      }
      return out;
    }
  }
}
