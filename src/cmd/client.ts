/** Entry of the client mode: every argv that is not `daemon` or `shim`. */
import { VERSION } from "../version.ts";

const HELP = `berth ${VERSION}: a containerd-compatible container runtime

Usage:
  berth daemon [flags]          run the daemon (what containerd is)
  berth shim [flags] ACTION     run a runtime v2 shim (also as containerd-shim-berth-v2)
  berth [global flags] COMMAND  the client (what ctr is)

Global flags:
  --help, -h      show this help
  --version, -v   print the version
`;

/** Runs the client mode; returns the process exit status. */
export function clientMain(args: string[]): Promise<number> {
  const first = args[0];
  if (first === "--version" || first === "-v") {
    console.log(`berth ${VERSION}`);
    return Promise.resolve(0);
  }
  if (first === undefined || first === "--help" || first === "-h" || first === "help") {
    console.log(HELP);
    return Promise.resolve(0);
  }
  // Commands with their own small modules, loaded only when used.
  if (first === "config") return import("../config/mod.ts").then((m) => m.configMain(args.slice(1)));
  // containerd's shims call `<binary> --address A publish --topic T --namespace N`.
  const publishAt = args.indexOf("publish");
  if (publishAt === 0 || (publishAt === 2 && /^(--address|-a)$/.test(first))) {
    return import("../events/mod.ts").then((m) => m.publishMain(args.filter((_, i) => i !== publishAt)));
  }
  console.error(`berth: unknown command "${first}" (see berth --help)`);
  return Promise.resolve(1);
}
