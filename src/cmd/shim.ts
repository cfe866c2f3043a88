/** Entry of `berth shim` / `containerd-shim-berth-v2`. */
import { log } from "../log/mod.ts";

/** Runs the shim mode; returns the process exit status. */
export function shimMain(_args: string[]): Promise<number> {
  log.error("berth shim is not built yet (see the shim issue)");
  return Promise.resolve(1);
}
