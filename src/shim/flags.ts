/**
 * The command line containerd gives a runtime v2 shim: Go-style single-dash
 * flags, then one action (`start`, `delete`, or berth's own `serve`).
 *
 *     containerd-shim-berth-v2 -namespace default -address /run/containerd/containerd.sock \
 *       -publish-binary /usr/bin/containerd -id c1 start
 *
 * Kept free of imports beyond errdefs: `start` is on the hot path.
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** What containerd told the shim, plus the environment it relies on. */
export interface ShimFlags {
  namespace: string;
  /** containerd's gRPC address (`-address`); part of the socket name. */
  address: string;
  /** The binary that can publish events (`-publish-binary`), containerd itself. */
  publishBinary: string;
  /** The task (container) id. */
  id: string;
  /** The bundle directory; containerd also makes it the working directory. */
  bundle: string;
  debug: boolean;
  /** A socket path to serve on (`-socket`); berth's serve action gets it from `start`. */
  socket: string;
  /** `start`, `delete`, `serve`, or "" when none was given. */
  action: string;
  /** containerd's ttrpc address (env TTRPC_ADDRESS), where events go. */
  ttrpcAddress: string;
}

const STRING_FLAGS = new Set(["namespace", "address", "publish-binary", "id", "bundle", "socket"]);
const BOOL_FLAGS = new Set(["debug", "v"]);

/**
 * Parses the shim's argv the way Go's `flag` package does: `-name value`,
 * `-name=value`, `--name` as well as `-name`, booleans without a value;
 * parsing stops at the first non-flag, which is the action.
 */
export function parseShimFlags(
  args: string[],
  env: (name: string) => string | undefined = Deno.env.get,
): ShimFlags {
  const flags: ShimFlags = {
    namespace: "",
    address: "",
    publishBinary: "containerd",
    id: "",
    bundle: "",
    debug: false,
    socket: "",
    action: "",
    ttrpcAddress: env("TTRPC_ADDRESS") ?? "",
  };
  let i = 0;
  for (; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    const body = arg.replace(/^--?/, "");
    const eq = body.indexOf("=");
    const name = eq >= 0 ? body.slice(0, eq) : body;
    let value: string | undefined = eq >= 0 ? body.slice(eq + 1) : undefined;
    if (BOOL_FLAGS.has(name)) {
      const on = value === undefined || value === "true" || value === "1";
      if (name === "debug") flags.debug = on;
      if (name === "v") flags.action = "version";
      continue;
    }
    if (!STRING_FLAGS.has(name)) {
      throw invalidArgument(`shim: flag provided but not defined: -${name}`);
    }
    if (value === undefined) {
      if (i + 1 >= args.length) throw invalidArgument(`shim: flag needs an argument: -${name}`);
      value = args[++i];
    }
    switch (name) {
      case "namespace":
        flags.namespace = value;
        break;
      case "address":
        flags.address = value;
        break;
      case "publish-binary":
        flags.publishBinary = value;
        break;
      case "id":
        flags.id = value;
        break;
      case "bundle":
        flags.bundle = value;
        break;
      case "socket":
        flags.socket = value;
        break;
    }
  }
  if (flags.action === "") flags.action = args[i] ?? "";
  return flags;
}

/** The argv that reproduces `flags` (for the serve process `start` spawns). */
export function formatShimFlags(flags: ShimFlags): string[] {
  const out = [
    "-namespace",
    flags.namespace,
    "-address",
    flags.address,
    "-publish-binary",
    flags.publishBinary,
  ];
  if (flags.id) out.push("-id", flags.id);
  if (flags.bundle) out.push("-bundle", flags.bundle);
  if (flags.socket) out.push("-socket", flags.socket);
  if (flags.debug) out.push("-debug");
  return out;
}
