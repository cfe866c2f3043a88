/**
 * `berth daemon`'s command line, which `berth config dump` takes too (it
 * prints the configuration a daemon started with the same flags would run
 * with).
 * @module
 */

import type { ConfigOverrides } from "../config/mod.ts";
import {
  DEFAULT_ADDRESS,
  DEFAULT_CONFIG_PATH,
  DEFAULT_ROOT,
  DEFAULT_STATE,
} from "../defaults/mod.ts";
import { invalidArgument } from "../errdefs/mod.ts";
import { exists } from "../fsutil/mod.ts";
import { parseArgs } from "../args/mod.ts";

/** Usage text of `berth daemon`. */
export const DAEMON_USAGE = `Usage: berth daemon [flags]

Runs the berth daemon: containerd's services over gRPC at <address> (for ctr and other
containerd clients) and over ttrpc at <address>.ttrpc.

Flags:
  -c, --config FILE       config file in containerd's TOML shape (default ${DEFAULT_CONFIG_PATH}, if present)
      --root DIR          persistent data (default ${DEFAULT_ROOT})
      --state DIR         runtime state (default ${DEFAULT_STATE})
  -a, --address SOCK      gRPC socket; ttrpc listens on SOCK.ttrpc (default ${DEFAULT_ADDRESS})
  -l, --log-level LEVEL   trace, debug, info, warn, error or fatal (default info)
  -h, --help              show this help
`;

/** What the command line asks for. */
export interface DaemonArgs {
  /** The config file named with --config, if any. */
  configPath?: string;
  /** Values that replace the config file's. */
  overrides: ConfigOverrides;
  help: boolean;
}

/**
 * Parses `berth daemon`'s arguments; InvalidArgument (its message starting
 * with `command`) on unknown flags or stray words.
 */
export function parseDaemonArgs(args: string[], command = "berth daemon"): DaemonArgs {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      options: {
        config: { type: "string", short: "c" },
        root: { type: "string" },
        state: { type: "string" },
        address: { type: "string", short: "a" },
        "log-level": { type: "string", short: "l" },
        help: { type: "boolean", short: "h" },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    throw invalidArgument(`${command}: ${(err as Error).message}`);
  }
  const v = parsed.values;
  for (
    const [flag, value] of [["--root", v.root], ["--state", v.state], [
      "--address",
      v.address,
    ]] as const
  ) {
    if (value !== undefined && !value.startsWith("/")) {
      throw invalidArgument(
        `${command}: ${flag} must be an absolute path, got ${JSON.stringify(value)}`,
      );
    }
  }
  return {
    configPath: v.config,
    overrides: { root: v.root, state: v.state, address: v.address, logLevel: v["log-level"] },
    help: v.help ?? false,
  };
}

/** The config file to read: --config's, else the default one when it exists, else none. */
export async function configPathOf(args: DaemonArgs): Promise<string | undefined> {
  if (args.configPath !== undefined) return args.configPath;
  return await exists(DEFAULT_CONFIG_PATH, { followSymlinks: true })
    ? DEFAULT_CONFIG_PATH
    : undefined;
}
