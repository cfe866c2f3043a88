/**
 * `berth config default` and `berth config dump`: the defaults, and the
 * configuration a daemon started with the same flags would run with.
 * @module
 */

import { configToToml, defaultConfig, effectiveConfig, loadConfig } from "./config.ts";
import { parseArgs } from "../args/mod.ts";

/** Where the daemon reads its config when `--config` is not given (only if the file exists). */
export const DEFAULT_CONFIG_PATH = "/etc/berth/config.toml";

const USAGE = `Usage:
  berth config default            print the default configuration as TOML
  berth config dump [flags]       print the effective configuration of a daemon started with these flags

Flags of dump (as for berth daemon):
  -c, --config FILE   config file (default ${DEFAULT_CONFIG_PATH}, if present)
      --root DIR      --state DIR      -a, --address SOCK      -l, --log-level LEVEL
`;

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs `berth config ARGS`; returns the exit status. Output goes to `out`, notes and errors to `err`. */
export async function configMain(
  args: string[],
  out: (s: string) => void = (s) => console.log(s),
  err: (s: string) => void = (s) => console.error(s),
): Promise<number> {
  const [sub, ...rest] = args;
  try {
    switch (sub) {
      case "default":
        if (rest.length > 0) {
          throw new Error(`config default takes no arguments, got ${rest.join(" ")}`);
        }
        out(configToToml(defaultConfig()));
        return 0;
      case "dump": {
        const { values } = parseArgs({
          args: rest,
          options: {
            config: { type: "string", short: "c" },
            root: { type: "string" },
            state: { type: "string" },
            address: { type: "string", short: "a" },
            "log-level": { type: "string", short: "l" },
          },
          strict: true,
          allowPositionals: false,
        });
        const path = values.config ??
          (await exists(DEFAULT_CONFIG_PATH) ? DEFAULT_CONFIG_PATH : undefined);
        const { config, warnings } = await loadConfig(path, {
          root: values.root,
          state: values.state,
          address: values.address,
          logLevel: values["log-level"],
        });
        for (const w of warnings) err(`warning: ${w}`);
        out(configToToml(effectiveConfig(config)));
        return 0;
      }
      case undefined:
      case "help":
      case "--help":
      case "-h":
        out(USAGE);
        return sub === undefined ? 1 : 0;
      default:
        throw new Error(`unknown config command ${JSON.stringify(sub)} (default, dump)`);
    }
  } catch (e) {
    err(`berth config: ${e instanceof Error ? e.message : String(e)}`);
    return 1;
  }
}
