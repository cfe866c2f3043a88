/**
 * Entry of the client mode: every argv that is not `daemon` or `shim`.
 * `config` and containerd's shim-side `publish` call are handled here; the
 * ctr-style commands live in src/client (loaded on first use).
 * @module
 */
import { VERSION } from "../version.ts";

/** Runs the client mode; returns the process exit status. */
export function clientMain(args: string[]): Promise<number> {
  const first = args[0];
  // Commands with their own small modules, loaded only when used.
  if (first === "config") {
    return import("./config.ts").then((m) => m.configMain(args.slice(1)));
  }
  if (first === "oci-hook") {
    return import("../ocihook/mod.ts").then((m) => m.ociHookMain(args.slice(1)));
  }
  // containerd's shims call `<binary> --address A publish --topic T --namespace N`.
  const publishAt = args.indexOf("publish");
  if (publishAt === 0 || (publishAt === 2 && /^(--address|-a)$/.test(first))) {
    return import("./publish.ts").then((m) =>
      m.publishMain(args.filter((_, i) => i !== publishAt))
    );
  }
  return import("../client/mod.ts").then((m) => m.runClient(args, VERSION));
}
