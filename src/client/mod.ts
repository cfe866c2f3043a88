/**
 * berth's ctr-compatible client: global flags, then a command with ctr's
 * name, aliases and flags. Each command's module is imported only when that
 * command runs, so `berth version` loads the version command and nothing
 * else (start-up time is most of a client command's wall time).
 * @module
 */

import { toBerthError } from "../errdefs/mod.ts";
import {
  type CommandSpec,
  findByName,
  type FlagValues,
  GLOBAL_FLAGS,
  type GlobalOptions,
  globalOptions,
  type GroupSpec,
  parseFlags,
  runCommand,
  runGroup,
  splitGlobal,
} from "./cli.ts";
import { describeError, exitStatusFor } from "./errors.ts";
import type { Span } from "../tracing/mod.ts";

/** A top-level command: its names, one line of help, and how to load it. */
export interface TopCommand {
  name: string;
  aliases?: string[];
  usage: string;
  load(): Promise<GroupSpec | CommandSpec>;
}

/** Every client command, in the order --help lists them (ctr's names and aliases). */
export const COMMANDS: readonly TopCommand[] = [
  {
    name: "plugins",
    aliases: ["plugin"],
    usage: "provides information about berth plugins",
    load: () => import("./commands/plugins.ts").then((m) => m.group),
  },
  {
    name: "version",
    usage: "print the client and server versions",
    load: () => import("./commands/version.ts").then((m) => m.command),
  },
  {
    name: "containers",
    aliases: ["c", "container"],
    usage: "manage containers",
    load: () => import("./commands/containers.ts").then((m) => m.group),
  },
  {
    name: "content",
    usage: "manage content",
    load: () => import("./commands/content.ts").then((m) => m.group),
  },
  {
    name: "events",
    aliases: ["event"],
    usage: "display berth events",
    load: () => import("./commands/events.ts").then((m) => m.command),
  },
  {
    name: "images",
    aliases: ["image", "i"],
    usage: "manage images",
    load: () => import("./commands/images.ts").then((m) => m.group),
  },
  {
    name: "leases",
    usage: "manage leases",
    load: () => import("./commands/leases.ts").then((m) => m.group),
  },
  {
    name: "namespaces",
    aliases: ["namespace", "ns"],
    usage: "manage namespaces",
    load: () => import("./commands/namespaces.ts").then((m) => m.group),
  },
  {
    name: "run",
    usage: "run a container",
    load: () => import("./commands/run.ts").then((m) => m.command),
  },
  {
    name: "snapshots",
    aliases: ["snapshot"],
    usage: "manage snapshots",
    load: () => import("./commands/snapshots.ts").then((m) => m.group),
  },
  {
    name: "tasks",
    aliases: ["t", "task"],
    usage: "manage tasks",
    load: () => import("./commands/tasks.ts").then((m) => m.group),
  },
  {
    name: "shim",
    aliases: ["shims"],
    usage:
      "interact with a shim directly (as `berth -n NS shim ...` or `berth shims ...`: a bare `berth shim` is shim mode)",
    load: () => import("./commands/shim.ts").then((m) => m.group),
  },
  {
    name: "debug",
    usage: "heap snapshot, CPU profile and calls in flight of the daemon (its debug socket)",
    load: () => import("./commands/debug.ts").then((m) => m.group),
  },
  {
    name: "completion",
    usage: "print a shell completion script (bash)",
    load: () => import("./commands/completion.ts").then((m) => m.completionGroup(COMMANDS)),
  },
];

/** Top-level --help. */
export function topHelp(version: string): string {
  const names = COMMANDS.map((c) => [c.name, ...(c.aliases ?? [])].join(", "));
  const width = Math.max(...names.map((n) => n.length));
  const flags = Object.entries(GLOBAL_FLAGS).map(([n, f]) =>
    `   ${(f.short ? `-${f.short}, ` : "    ") + `--${n}${f.type === "string" ? " value" : ""}`}`
      .padEnd(34) + f.help
  );
  return [
    `berth ${version}: a containerd-compatible container runtime`,
    "",
    "USAGE:",
    "   berth [global options] command [command options] [arguments...]",
    "   berth daemon [flags]          run the daemon (what containerd is)",
    "   berth shim [flags] ACTION     run a runtime v2 shim (also as containerd-shim-berth-v2)",
    "   berth config default|dump     print the daemon's configuration",
    "   berth oci-hook -- CMD [ARG...] run CMD as an OCI hook, templates rendered (containerd's oci-hook)",
    "",
    "COMMANDS:",
    ...COMMANDS.map((c, i) => `   ${names[i].padEnd(width)}   ${c.usage}`),
    "",
    "GLOBAL OPTIONS:",
    ...flags,
  ].join("\n");
}

function isGroup(x: GroupSpec | CommandSpec): x is GroupSpec {
  return "commands" in x;
}

/**
 * Runs the client on `argv` (everything after the executable) and returns
 * its exit status; prints errors instead of throwing.
 */
export async function runClient(argv: string[], version: string): Promise<number> {
  let debug = argv.includes("--debug");
  try {
    const [globalArgv, rest] = splitGlobal(argv);
    const { flags } = parseFlags(globalArgv, GLOBAL_FLAGS, "berth");
    const global: GlobalOptions = globalOptions(flags as FlagValues, (k) => Deno.env.get(k));
    debug = global.debug;
    if (flags.version === true) {
      console.log(`berth ${version}`);
      return 0;
    }
    let word = rest[0];
    if (word === "trace" || flags.trace === true) {
      if (word === "trace") rest.shift();
      word = rest[0];
      if (word !== undefined && word !== "help" && flags.help !== true) {
        return await traced(rest, (span) => {
          global.trace = span;
          return dispatch(rest, global);
        });
      }
    }
    if (flags.help === true || word === undefined || word === "help") {
      console.log(topHelp(version));
      return word === undefined && flags.help !== true ? 1 : 0;
    }
    return await dispatch(rest, global);
  } catch (err) {
    console.error(describeError(err, debug));
    return exitStatusFor(toBerthError(err).code);
  }
}

/** Runs the command named by `rest[0]` with the rest as its arguments. */
async function dispatch(rest: string[], global: GlobalOptions): Promise<number> {
  const word = rest[0];
  const top = findByName(COMMANDS, word);
  if (top === undefined) {
    const { usageError } = await import("./cli.ts");
    throw usageError(`unknown command "${word}" (see berth --help)`);
  }
  const span = global.trace?.child("load command");
  const spec = await top.load();
  span?.finish();
  const path = `berth ${top.name}`;
  return isGroup(spec)
    ? await runGroup(spec, rest.slice(1), global, path)
    : await runCommand(spec, rest.slice(1), global, path);
}

/** Runs `run` as one traced request and prints its span tree to stderr. */
async function traced(
  argv: string[],
  run: (root: Span) => Promise<number>,
): Promise<number> {
  const { startTrace, traceReport } = await import("./trace.ts");
  const session = await startTrace(`berth ${argv.join(" ")}`);
  let failure: unknown;
  try {
    return await run(session.root);
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    const spans = await session.finish(failure);
    console.error(traceReport(spans));
  }
}
