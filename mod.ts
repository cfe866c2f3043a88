/**
 * berth: one executable, three modes chosen by argv.
 *
 * - `berth daemon ...`: the long-lived service (what containerd is).
 * - `berth shim ...`, or any invocation shaped like containerd's call of a
 *   runtime v2 shim (`containerd-shim-berth-v2 -namespace ... start`): the shim.
 * - anything else: the ctr-style client.
 *
 * Each mode is imported only when chosen, so the client does not pay for
 * loading the daemon's code.
 * @module
 */

/** Flags containerd puts before a shim's action; the client never uses single-dash long flags. */
const SHIM_FLAGS = new Set([
  "-namespace",
  "-address",
  "-publish-binary",
  "-id",
  "-bundle",
  "-debug",
  "-socket",
]);

/** Decides which mode an argv selects. */
export function chooseMode(args: string[], invokedAs: string): "daemon" | "shim" | "client" {
  if (args[0] === "daemon") return "daemon";
  if (args[0] === "shim") return "shim";
  if (invokedAs.startsWith("containerd-shim-")) return "shim";
  if (args.length > 0 && SHIM_FLAGS.has(args[0].split("=")[0])) return "shim";
  return "client";
}

function invokedName(): string {
  const path = Deno.build.standalone
    ? Deno.execPath()
    : decodeURIComponent(new URL(Deno.mainModule).pathname);
  return path.slice(path.lastIndexOf("/") + 1);
}

async function main(args: string[]): Promise<number> {
  switch (chooseMode(args, invokedName())) {
    case "daemon": {
      const { daemonMain } = await import("./src/cmd/daemon.ts");
      return await daemonMain(args.slice(1));
    }
    case "shim": {
      const { shimMain } = await import("./src/cmd/shim.ts");
      return await shimMain(args[0] === "shim" ? args.slice(1) : args);
    }
    default: {
      const { clientMain } = await import("./src/cmd/client.ts");
      return await clientMain(args);
    }
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
