/**
 * A small table-driven layer over parseArgs (src/args): commands declare
 * their flags as data, and the same table drives parsing, `--help` text and
 * bash completion. Nothing here talks to the daemon.
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { parseArgs } from "../args/mod.ts";
import { DEFAULT_ADDRESS } from "../defaults/mod.ts";
import type { Span } from "../tracing/mod.ts";
import { parseGoDuration } from "../duration/mod.ts";

/** One flag of a command, as a table row. */
export interface FlagSpec {
  /** "boolean" flags take no value; "string" flags take one. */
  type: "boolean" | "string";
  /** One-letter alias, e.g. "q" for --quiet. */
  short?: string;
  /** May be given more than once (values collected in order). */
  multiple?: boolean;
  /** Value when not given (string flags only). */
  default?: string;
  /** One line for --help. */
  help: string;
}

/** Parsed flag values: booleans, strings, or string lists for `multiple` flags. */
export type FlagValues = Record<string, boolean | string | string[] | undefined>;

/** What a command's `run` receives. */
export interface Invocation {
  /** Flags of this command, parsed. */
  flags: FlagValues;
  /** Positional arguments after the flags. */
  args: string[];
  /** The global options (address, namespace, timeout, debug). */
  global: GlobalOptions;
}

/** A leaf command: flags plus what it does; returns the exit status. */
export interface CommandSpec {
  name: string;
  aliases?: string[];
  /** One line for the parent's command list. */
  usage: string;
  /** Shape of the positional arguments, for --help, e.g. "CONTAINER [KEY=VALUE ...]". */
  argsUsage?: string;
  flags?: Record<string, FlagSpec>;
  /**
   * After this many positional arguments, the rest is taken verbatim (a
   * command line for the container: `run IMAGE ID sh -c ...`), as ctr does.
   */
  passthrough?: number;
  run(inv: Invocation): Promise<number>;
  /** For commands whose code is heavy: loads the full spec (flags and run) before parsing. */
  resolve?(): Promise<CommandSpec>;
}

/** A command with subcommands (e.g. `namespaces`), possibly with a default one. */
export interface GroupSpec {
  name: string;
  aliases?: string[];
  usage: string;
  /** Flags given between the group's name and the subcommand (e.g. `snapshots --snapshotter X ls`). */
  flags?: Record<string, FlagSpec>;
  commands: CommandSpec[];
}

/** Options every command shares, from flags before the command and the environment. */
export interface GlobalOptions {
  /** The daemon's address; the ttrpc socket is `${address}.ttrpc`. */
  address: string;
  namespace: string;
  /** Total time the command may take, in ms (0: no limit). */
  timeoutMs: number;
  /** Time to wait for the connection, in ms (0: no limit). */
  connectTimeoutMs: number;
  debug: boolean;
  /** Under `berth trace` / `--trace`: the command's root span; every call is made under it. */
  trace?: Span;
}

/** Default daemon address (berth's, not containerd's). */

/** The global flags, as a table (also used for --help and completion). */
export const GLOBAL_FLAGS: Record<string, FlagSpec> = {
  address: {
    type: "string",
    short: "a",
    help: `address of berth daemon (env BERTH_ADDRESS, default ${DEFAULT_ADDRESS})`,
  },
  namespace: {
    type: "string",
    short: "n",
    help: 'namespace to use (env BERTH_NAMESPACE or CONTAINERD_NAMESPACE, default "default")',
  },
  timeout: { type: "string", help: "total timeout for the command, e.g. 10s, 1m30s" },
  "connect-timeout": { type: "string", help: "timeout for connecting to the daemon" },
  debug: { type: "boolean", help: "show debug output (and stack traces of errors)" },
  trace: {
    type: "boolean",
    help:
      "trace the command and print its spans (client, daemon, shim, runc) to stderr; also: berth trace COMMAND",
  },
  help: { type: "boolean", short: "h", help: "show help" },
  version: { type: "boolean", short: "v", help: "print the version" },
};

/** A usage error: bad flags or arguments (exit status 3, like InvalidArgument). */
export function usageError(message: string): BerthError {
  return new BerthError(Code.InvalidArgument, message);
}

/** The spellings (`--name`, `-n`) of the flags in `table` that take a value. */
function valueFlags(table: Record<string, FlagSpec>): Set<string> {
  const out = new Set<string>();
  for (const [name, f] of Object.entries(table)) {
    if (f.type !== "string") continue;
    out.add(`--${name}`);
    if (f.short) out.add(`-${f.short}`);
  }
  return out;
}

/**
 * Splits argv at the first word that is not a global flag (or the value of
 * one): returns the global flags' part and the command's part.
 */
export function splitGlobal(
  argv: string[],
  table: Record<string, FlagSpec> = GLOBAL_FLAGS,
): [string[], string[]] {
  const takesValue = valueFlags(table);
  let i = 0;
  while (i < argv.length) {
    const a = argv[i];
    if (a === "--") return [argv.slice(0, i), argv.slice(i + 1)];
    if (!a.startsWith("-") || a === "-") break;
    i += takesValue.has(a) ? 2 : 1;
  }
  return [argv.slice(0, i), argv.slice(i)];
}

/**
 * Splits argv after its `n`-th positional argument: the head has the flags
 * and those positionals, the tail is everything after (flags included).
 */
export function splitAfterPositionals(
  argv: string[],
  table: Record<string, FlagSpec>,
  n: number,
): [string[], string[]] {
  const takesValue = valueFlags(table);
  let seen = 0;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--") return [argv.slice(0, i), argv.slice(i + 1)];
    if (a.startsWith("-") && a !== "-") {
      if (takesValue.has(a)) i++;
      continue;
    }
    if (++seen === n) return [argv.slice(0, i + 1), argv.slice(i + 1)];
  }
  return [argv, []];
}

/** Parses `argv` against a flag table; unknown flags are usage errors naming the command. */
export function parseFlags(
  argv: string[],
  flags: Record<string, FlagSpec>,
  where: string,
): { flags: FlagValues; args: string[] } {
  const options: Record<
    string,
    { type: "boolean" | "string"; short?: string; multiple?: boolean; default?: string }
  > = {};
  for (const [name, f] of Object.entries(flags)) {
    options[name] = { type: f.type };
    if (f.short) options[name].short = f.short;
    if (f.multiple) options[name].multiple = true;
    if (f.default !== undefined) options[name].default = f.default;
  }
  try {
    const { values, positionals } = parseArgs({
      args: argv,
      options,
      strict: true,
      allowPositionals: true,
    });
    return { flags: values as FlagValues, args: positionals };
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    throw usageError(
      `${where}: ${
        msg.split("\n")[0].replace(/\. To specify a positional.*$/, "")
      } (see ${where} --help)`,
    );
  }
}

/** Parses a Go-style duration ("1m30s", "500ms", "10s", plain seconds) into milliseconds. */
export function parseDuration(text: string): number {
  if (/^\d+(\.\d+)?$/.test(text)) return Number(text) * 1000;
  const ms = parseGoDuration(text);
  if (ms === undefined) {
    throw usageError(`invalid duration "${text}" (use e.g. 10s, 1m30s, 500ms)`);
  }
  return ms;
}

/** Resolves global options from parsed global flags and the environment. */
export function globalOptions(
  values: FlagValues,
  env: (k: string) => string | undefined,
): GlobalOptions {
  const str = (k: string) => typeof values[k] === "string" ? values[k] as string : undefined;
  const timeout = str("timeout");
  const connect = str("connect-timeout");
  return {
    address: (str("address") || env("BERTH_ADDRESS") || DEFAULT_ADDRESS).replace(/^unix:\/\//, ""),
    namespace: str("namespace") || env("BERTH_NAMESPACE") || env("CONTAINERD_NAMESPACE") ||
      "default",
    timeoutMs: timeout === undefined ? 0 : parseDuration(timeout),
    connectTimeoutMs: connect === undefined ? 0 : parseDuration(connect),
    debug: values.debug === true,
  };
}

/** Finds a command or group by name or alias. */
export function findByName<T extends { name: string; aliases?: string[] }>(
  list: readonly T[],
  word: string,
): T | undefined {
  return list.find((c) => c.name === word || (c.aliases?.includes(word) ?? false));
}

function flagLines(flags: Record<string, FlagSpec>): string[] {
  const rows = Object.entries(flags).map(([name, f]) => {
    const left = `${f.short ? `-${f.short}, ` : "    "}--${name}${
      f.type === "string" ? " value" : ""
    }`;
    const def = f.default !== undefined ? ` (default "${f.default}")` : "";
    return [left, f.help + def + (f.multiple ? " (repeatable)" : "")];
  });
  const width = Math.max(0, ...rows.map(([l]) => l.length));
  return rows.map(([l, r]) => `   ${l.padEnd(width)}   ${r}`);
}

/** --help text of a leaf command. */
export function commandHelp(path: string, cmd: CommandSpec): string {
  const lines = [
    `NAME:\n   ${path} - ${cmd.usage}`,
    "",
    `USAGE:\n   ${path} [command options] ${cmd.argsUsage ?? ""}`.trimEnd(),
  ];
  if (cmd.aliases?.length) lines.push("", `ALIASES:\n   ${cmd.aliases.join(", ")}`);
  lines.push(
    "",
    "OPTIONS:",
    ...flagLines({
      ...(cmd.flags ?? {}),
      help: { type: "boolean", short: "h", help: "show help" },
    }),
  );
  return lines.join("\n");
}

/** --help text of a group: its subcommands. */
export function groupHelp(path: string, group: GroupSpec): string {
  const width = Math.max(
    ...group.commands.map((c) => [c.name, ...(c.aliases ?? [])].join(", ").length),
  );
  const lines = [
    `NAME:\n   ${path} - ${group.usage}`,
    "",
    `USAGE:\n   ${path} command [command options] [arguments...]`,
    "",
    "COMMANDS:",
    ...group.commands.map((c) =>
      `   ${[c.name, ...(c.aliases ?? [])].join(", ").padEnd(width)}   ${c.usage}`
    ),
  ];
  return lines.join("\n");
}

/**
 * Runs a group: picks the subcommand from `argv[0]`, parses its flags and
 * runs it. `--help` at any level prints that level's help.
 */
export async function runGroup(
  group: GroupSpec,
  argv: string[],
  global: GlobalOptions,
  path: string,
): Promise<number> {
  let groupFlags: FlagValues = {};
  if (group.flags) {
    const [mine, rest] = splitGlobal(argv, {
      ...group.flags,
      help: { type: "boolean", short: "h", help: "" },
    });
    const parsed = parseFlags(mine, {
      ...group.flags,
      help: { type: "boolean", short: "h", help: "show help" },
    }, path);
    groupFlags = parsed.flags;
    argv = parsed.flags.help === true ? ["--help"] : rest;
    delete groupFlags.help;
  }
  const word = argv[0];
  if (word === undefined || word === "--help" || word === "-h" || word === "help") {
    console.log(groupHelp(path, group));
    return word === undefined ? 1 : 0;
  }
  const cmd = findByName(group.commands, word);
  if (cmd === undefined) {
    throw usageError(
      `${path}: unknown command "${word}" (commands: ${
        group.commands.map((c) => c.name).join(", ")
      })`,
    );
  }
  return await runCommand(cmd, argv.slice(1), global, `${path} ${cmd.name}`, groupFlags);
}

/** Parses a leaf command's flags (printing help for --help) and runs it. */
export async function runCommand(
  cmd: CommandSpec,
  argv: string[],
  global: GlobalOptions,
  path: string,
  inherited: FlagValues = {},
): Promise<number> {
  if (cmd.resolve) {
    const span = global.trace?.child("load command code");
    cmd = await cmd.resolve();
    span?.finish();
  }
  const table = {
    ...(cmd.flags ?? {}),
    help: { type: "boolean", short: "h", help: "show help" } as FlagSpec,
  };
  let tail: string[] = [];
  if (cmd.passthrough !== undefined) {
    [argv, tail] = splitAfterPositionals(argv, table, cmd.passthrough);
  }
  const parsed = parseFlags(argv, table, path);
  parsed.args.push(...tail);
  // A flag the group took applies unless the subcommand was given it too.
  const flags = { ...parsed.flags };
  for (const [k, v] of Object.entries(inherited)) {
    if (v !== undefined && !(k in parsed.flags && argv.some((a) => a.startsWith(`--${k}`)))) {
      flags[k] = v;
    }
  }
  const args = parsed.args;
  if (flags.help === true) {
    console.log(commandHelp(path, cmd));
    return 0;
  }
  return await cmd.run({ flags, args, global });
}

/** A string flag's value, or undefined. */
export function str(flags: FlagValues, name: string): string | undefined {
  const v = flags[name];
  return typeof v === "string" ? v : undefined;
}

/** A repeatable flag's values ([] when not given). */
export function list(flags: FlagValues, name: string): string[] {
  const v = flags[name];
  if (Array.isArray(v)) return v;
  return typeof v === "string" ? [v] : [];
}

/** Splits `KEY=VALUE` words into a label map (a missing `=` means an empty value, which clears). */
export function labelArgs(words: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const w of words) {
    const i = w.indexOf("=");
    if (i === 0) throw usageError(`invalid label "${w}": the key is empty`);
    if (i < 0) out[w] = "";
    else out[w.slice(0, i)] = w.slice(i + 1);
  }
  return out;
}
