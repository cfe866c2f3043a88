/** Entry of `berth daemon`. */
import { log } from "../log/mod.ts";

/** Runs the daemon mode; returns the process exit status. */
export function daemonMain(_args: string[]): Promise<number> {
  log.error("berth daemon is not built yet (see the daemon issues)");
  return Promise.resolve(1);
}
