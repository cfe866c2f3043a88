/**
 * `berth config default` and `berth config dump`: the defaults, and the
 * configuration a daemon started with the same flags would run with.
 * @module
 */

import { configToToml, defaultConfig, effectiveConfig, loadConfig } from "../config/mod.ts";
import { configPathOf, DAEMON_USAGE, parseDaemonArgs } from "./daemon_args.ts";

const USAGE = `Usage:
  berth config default            print the default configuration as TOML
  berth config dump [flags]       print the effective configuration of a daemon started with these flags

Flags of dump: those of berth daemon.

${DAEMON_USAGE.slice(DAEMON_USAGE.indexOf("Flags:"))}`;

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
        const parsed = parseDaemonArgs(rest, "config dump");
        if (parsed.help) {
          out(USAGE);
          return 0;
        }
        const { config, warnings } = await loadConfig(
          await configPathOf(parsed),
          parsed.overrides,
        );
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
