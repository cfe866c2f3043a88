/**
 * Network configuration: the lexically first `*.conflist`, `*.conf` or
 * `*.json` file of a directory, as containerd's CRI plugin picks it, parsed
 * and validated into one {@link NetworkList}. A single plugin's `.conf` is
 * wrapped as a list of one.
 *
 * @module
 */

import { BerthError, Code, invalidArgument } from "../errdefs/mod.ts";

/** One plugin's configuration, exactly as written (every key kept). */
export type PluginConfig = Record<string, unknown> & { type: string };

/** A network: a name, a CNI version and the plugins run in order. */
export interface NetworkList {
  name: string;
  cniVersion: string;
  /** `disableCheck` of the conflist: CHECK does nothing when true. */
  disableCheck: boolean;
  plugins: PluginConfig[];
  /** The file it came from ("" when built in code). */
  source: string;
}

/** The file extensions a configuration may have, as containerd accepts them. */
const EXTENSIONS = [".conflist", ".conf", ".json"];

// The CNI specification's rule for a network name.
const NAME_RE = /^[a-zA-Z0-9][a-zA-Z0-9_.\-]*$/;
// Plugin types name a binary in a bin dir: no path may hide in them.
const TYPE_RE = /^[A-Za-z0-9][A-Za-z0-9_.\-]*$/;
const VERSION_RE = /^\d+\.\d+\.\d+$/;

/** The error of a directory that holds no network configuration (containerd's words). */
export class NotInitializedError extends BerthError {
  /** Says that no configuration is in `dir`, or why `dir` cannot be read. */
  constructor(detail: string) {
    super(Code.FailedPrecondition, `cni plugin not initialized: ${detail}`);
    this.name = "NotInitializedError";
  }
}

/**
 * Loads the network of `confDir`: its lexically first configuration file.
 * Throws {@link NotInitializedError} when there is none (or the directory is
 * missing), and InvalidArgument naming the file when that file is malformed.
 */
export async function loadNetwork(confDir: string): Promise<NetworkList> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(confDir)) {
      if ((e.isFile || e.isSymlink) && EXTENSIONS.some((x) => e.name.endsWith(x))) {
        names.push(e.name);
      }
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new NotInitializedError(`no network config found in ${confDir}`);
    }
    throw err;
  }
  if (names.length === 0) throw new NotInitializedError(`no network config found in ${confDir}`);
  names.sort();
  const file = `${confDir.replace(/\/+$/, "")}/${names[0]}`;
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (err) {
    // Removed between the listing and the read: the directory is changing.
    if (err instanceof Deno.errors.NotFound) {
      throw new NotInitializedError(`no network config found in ${confDir}`);
    }
    throw err;
  }
  return parseNetwork(text, file);
}

/**
 * Parses a conflist, or a single plugin's conf (no `plugins` key), from
 * `text`; `source` names the file in errors. Throws InvalidArgument.
 */
export function parseNetwork(text: string, source = ""): NetworkList {
  const where = source ? `network config ${source}` : "network config";
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`${where}: invalid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) throw invalidArgument(`${where}: not a JSON object`);
  const name = doc.name;
  if (typeof name !== "string" || !NAME_RE.test(name)) {
    throw invalidArgument(
      `${where}: "name" must be a string of letters, digits, '_', '.' or '-', got ${
        JSON.stringify(name)
      }`,
    );
  }
  const cniVersion = doc.cniVersion;
  if (typeof cniVersion !== "string" || !VERSION_RE.test(cniVersion)) {
    throw invalidArgument(
      `${where}: "cniVersion" must be a version such as "1.0.0", got ${JSON.stringify(cniVersion)}`,
    );
  }
  let plugins: unknown[];
  let disableCheck = false;
  if ("plugins" in doc) {
    if (!Array.isArray(doc.plugins) || doc.plugins.length === 0) {
      throw invalidArgument(`${where}: "plugins" must be a non-empty array`);
    }
    plugins = doc.plugins;
    if (doc.disableCheck !== undefined) {
      if (typeof doc.disableCheck !== "boolean") {
        throw invalidArgument(`${where}: "disableCheck" must be true or false`);
      }
      disableCheck = doc.disableCheck;
    }
  } else {
    plugins = [doc];
  }
  const checked = plugins.map((p, i) => {
    if (!isObject(p)) throw invalidArgument(`${where}: plugin ${i} is not a JSON object`);
    if (typeof p.type !== "string" || !TYPE_RE.test(p.type)) {
      throw invalidArgument(
        `${where}: plugin ${i}: "type" must name a plugin binary, got ${JSON.stringify(p.type)}`,
      );
    }
    if (p.capabilities !== undefined && !isObject(p.capabilities)) {
      throw invalidArgument(`${where}: plugin ${i} (${p.type}): "capabilities" must be an object`);
    }
    return p as PluginConfig;
  });
  return { name, cniVersion, disableCheck, plugins: checked, source };
}

/** True when `v` is a plain JSON object. */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Compares two dotted versions: negative, zero or positive. */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(".").map(Number);
  const pb = b.split(".").map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}
