/**
 * The CNI exec protocol (specification 1.0.0): one plugin binary run once,
 * its command and runtime facts in CNI_* environment variables, its network
 * configuration on stdin, its result (or its error object) on stdout; and
 * the list semantics over it: ADD in order, DEL in reverse, CHECK in order,
 * each plugin given the previous (or the saved) result as `prevResult`.
 *
 * @module
 */

import { BerthError, Code, deadlineExceeded } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { spawn } from "../spawn/mod.ts";
import { compareVersions, isObject, type NetworkList, type PluginConfig } from "./config.ts";

/** The CNI commands berth sends. */
export type Command = "ADD" | "DEL" | "CHECK" | "VERSION";

/** Where and for what a plugin runs (the CNI_* variables, and runtimeConfig). */
export interface Invocation {
  /** CNI_CONTAINERID. */
  containerId: string;
  /** CNI_NETNS; "" when the namespace is gone (DEL). */
  netns: string;
  /** CNI_IFNAME. */
  ifname: string;
  /** CNI_ARGS as key/value pairs, joined `K=V;K=V` in this order. */
  args: [string, string][];
  /**
   * Capability arguments (e.g. `portMappings`); each plugin gets in its
   * `runtimeConfig` only those its `capabilities` declare.
   */
  capabilityArgs: Record<string, unknown>;
}

/** How plugins are found and how long one may run. */
export interface ExecOptions {
  /** Directories searched in order for a plugin binary (also CNI_PATH). */
  binDirs: string[];
  /** Milliseconds one plugin run may take before it is killed. */
  timeoutMs: number;
}

/** Finds plugin `type` in `binDirs`, in order; NotFound names every dir searched. */
export async function findPlugin(type: string, binDirs: string[]): Promise<string> {
  for (const dir of binDirs) {
    const path = `${dir.replace(/\/+$/, "")}/${type}`;
    try {
      const st = await Deno.stat(path);
      if (st.isFile && (st.mode ?? 0) & 0o111) return path;
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  }
  throw new BerthError(
    Code.NotFound,
    `failed to find plugin "${type}" in path [${binDirs.join(" ")}]`,
  );
}

/**
 * The bytes a plugin reads on stdin: its own configuration with the list's
 * `name` and `cniVersion`, `prevResult` when there is one, and the
 * `runtimeConfig` of the capabilities it declares.
 */
export function pluginStdin(
  list: NetworkList,
  plugin: PluginConfig,
  capabilityArgs: Record<string, unknown>,
  prevResult: unknown,
): Record<string, unknown> {
  const conf: Record<string, unknown> = { ...plugin, name: list.name, cniVersion: list.cniVersion };
  if (prevResult !== undefined) conf.prevResult = prevResult;
  else delete conf.prevResult;
  const caps = isObject(plugin.capabilities) ? plugin.capabilities : {};
  const runtimeConfig: Record<string, unknown> = {};
  for (const [cap, on] of Object.entries(caps)) {
    if (on === true && capabilityArgs[cap] !== undefined) runtimeConfig[cap] = capabilityArgs[cap];
  }
  if (Object.keys(runtimeConfig).length > 0) conf.runtimeConfig = runtimeConfig;
  else delete conf.runtimeConfig;
  return conf;
}

// What a CNI error code means in berth's vocabulary (the spec's well-known codes).
function codeFor(cniCode: unknown): Code {
  switch (cniCode) {
    case 1: // incompatible CNI version
      return Code.FailedPrecondition;
    case 2: // unsupported field in network configuration
    case 4: // invalid necessary environment variables
    case 6: // failed to decode content
    case 7: // invalid network config
      return Code.InvalidArgument;
    case 3: // container unknown or does not exist
      return Code.NotFound;
    case 11: // try again later
      return Code.Unavailable;
    default:
      return Code.Unknown;
  }
}

/**
 * Runs one plugin with `command` and returns what it printed, parsed (or
 * undefined when it printed nothing). A failure becomes a BerthError that
 * names the plugin, the command and the plugin's own `msg` and `details`.
 */
export async function execPlugin(
  command: Command,
  plugin: PluginConfig,
  stdin: Record<string, unknown>,
  inv: Invocation,
  opts: ExecOptions,
): Promise<unknown> {
  const path = await findPlugin(plugin.type, opts.binDirs);
  const what = `plugin type="${plugin.type}" failed (${command.toLowerCase()})`;
  const env: Record<string, string> = {
    CNI_COMMAND: command,
    CNI_CONTAINERID: inv.containerId,
    CNI_NETNS: inv.netns,
    CNI_IFNAME: inv.ifname,
    CNI_ARGS: inv.args.map(([k, v]) => `${k}=${v}`).join(";"),
    CNI_PATH: opts.binDirs.join(":"),
  };
  const child = spawn(path, [], { env, stdin: "piped", stdout: "piped", stderr: "piped" });
  const stdout = child.stdout.getReader();
  const stderr = child.stderr.getReader();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // exited meanwhile
    }
    // A descendant may still hold the pipes: stop reading them too.
    stdout.cancel().catch(() => {});
    stderr.cancel().catch(() => {});
  }, opts.timeoutMs);
  try {
    const writer = child.stdin.getWriter();
    // A plugin that exits without reading its stdin closes the pipe: its exit tells.
    await writer.write(new TextEncoder().encode(JSON.stringify(stdin))).catch(() => {});
    await writer.close().catch(() => {});
    const [status, out, err] = await Promise.all([
      child.status,
      readText(stdout),
      readText(stderr),
    ]);
    if (timedOut) {
      throw deadlineExceeded(`${what}: no answer within ${opts.timeoutMs} ms; killed`);
    }
    const parsed = parseOutput(out);
    if (!status.success) {
      if (isObject(parsed) && typeof parsed.msg === "string") {
        const details = typeof parsed.details === "string" && parsed.details
          ? `; ${parsed.details}`
          : "";
        throw new BerthError(codeFor(parsed.code), `${what}: ${parsed.msg}${details}`);
      }
      const text = err.trim() || out.trim() || `exit status ${status.code}`;
      throw new BerthError(Code.Unknown, `${what}: ${text}`);
    }
    if (err.trim()) log.debug("cni plugin stderr", { plugin: plugin.type, stderr: err.trim() });
    if (out.trim() && parsed === undefined) {
      throw new BerthError(Code.Unknown, `${what}: result is not JSON: ${out.trim()}`);
    }
    return parsed;
  } finally {
    clearTimeout(timer);
  }
}

async function readText(reader: ReadableStreamDefaultReader<Uint8Array>): Promise<string> {
  const decoder = new TextDecoder();
  let text = "";
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += decoder.decode(value, { stream: true });
    }
  } catch {
    // cancelled after a timeout: what came so far is all there is
  }
  return text + decoder.decode();
}

function parseOutput(out: string): unknown {
  if (!out.trim()) return undefined;
  try {
    return JSON.parse(out);
  } catch {
    return undefined;
  }
}

/**
 * ADD over a list: each plugin in order, each given the previous one's
 * result; returns the last result. A plugin that prints no result fails.
 */
export async function addList(
  list: NetworkList,
  inv: Invocation,
  opts: ExecOptions,
): Promise<unknown> {
  let prev: unknown = undefined;
  for (const plugin of list.plugins) {
    const stdin = pluginStdin(list, plugin, inv.capabilityArgs, prev);
    const result = await execPlugin("ADD", plugin, stdin, inv, opts);
    if (!isObject(result)) {
      throw new BerthError(
        Code.Unknown,
        `plugin type="${plugin.type}" failed (add): it printed no result`,
      );
    }
    prev = result;
  }
  return prev;
}

// The spec gave DEL and CHECK the cached result from version 0.4.0 on.
function hasPrevResultOnDel(list: NetworkList): boolean {
  return compareVersions(list.cniVersion, "0.4.0") >= 0;
}

/**
 * DEL over a list: each plugin in reverse order, each given `cached` (what
 * ADD returned) as `prevResult` when the list's version has that (0.4.0+).
 * Every plugin runs even when one fails, so that what can be freed is; the
 * first failure is thrown at the end.
 */
export async function delList(
  list: NetworkList,
  inv: Invocation,
  cached: unknown,
  opts: ExecOptions,
): Promise<void> {
  const prev = hasPrevResultOnDel(list) && cached !== undefined ? cached : undefined;
  let first: unknown = undefined;
  for (const plugin of [...list.plugins].reverse()) {
    const stdin = pluginStdin(list, plugin, inv.capabilityArgs, prev);
    try {
      await execPlugin("DEL", plugin, stdin, inv, opts);
    } catch (err) {
      first ??= err;
    }
  }
  if (first !== undefined) throw first;
}

/**
 * CHECK over a list, in order, each plugin given `cached`. Lists before
 * 0.4.0 have no CHECK (FailedPrecondition); `disableCheck` makes it a no-op.
 */
export async function checkList(
  list: NetworkList,
  inv: Invocation,
  cached: unknown,
  opts: ExecOptions,
): Promise<void> {
  if (!hasPrevResultOnDel(list)) {
    throw new BerthError(
      Code.FailedPrecondition,
      `network "${list.name}": configuration version "${list.cniVersion}" does not support the CHECK command`,
    );
  }
  if (list.disableCheck) return;
  if (cached === undefined) {
    throw new BerthError(
      Code.FailedPrecondition,
      `network "${list.name}": no result of ADD to check against`,
    );
  }
  for (const plugin of list.plugins) {
    const stdin = pluginStdin(list, plugin, inv.capabilityArgs, cached);
    await execPlugin("CHECK", plugin, stdin, inv, opts);
  }
}

/**
 * VERSION of one plugin: the versions of the specification it supports.
 * `cniVersion` is the version berth asks in.
 */
export async function pluginVersions(
  type: string,
  opts: ExecOptions,
  cniVersion = "1.0.0",
): Promise<string[]> {
  const plugin: PluginConfig = { type };
  const inv: Invocation = { containerId: "", netns: "", ifname: "", args: [], capabilityArgs: {} };
  const out = await execPlugin("VERSION", plugin, { cniVersion }, inv, opts);
  if (!isObject(out) || !Array.isArray(out.supportedVersions)) {
    throw new BerthError(
      Code.Unknown,
      `plugin type="${type}" failed (version): no supportedVersions in its answer`,
    );
  }
  return out.supportedVersions.filter((v): v is string => typeof v === "string");
}
