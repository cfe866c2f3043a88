/**
 * The OCI runtime settings of one container, saved in the bundle so that
 * `delete` (run after the shim died) finds the same runtime and root. No
 * protobuf here: `delete` is on the path of every container's removal.
 * Decoding them from a Create request is in runtime_options.ts.
 * @module
 */

import type { RuncConfig } from "../runc/mod.ts";

/** berth's default runtime state root; the namespace is a subdirectory. */
export const DEFAULT_RUNC_ROOT = "/run/berth/runc";

/** The runtime settings berth uses (a subset of containerd.runc.v1.Options). */
export interface RuntimeOptions {
  binaryName: string;
  root: string;
  systemdCgroup: boolean;
  noPivotRoot: boolean;
  noNewKeyring: boolean;
  ioUid: number;
  ioGid: number;
  criuPath: string;
  criuWorkPath: string;
}

/** Settings when containerd sends none. */
export function defaultRuntimeOptions(): RuntimeOptions {
  return {
    binaryName: "",
    root: "",
    systemdCgroup: false,
    noPivotRoot: false,
    noNewKeyring: false,
    ioUid: 0,
    ioGid: 0,
    criuPath: "",
    criuWorkPath: "",
  };
}

/** How to call the runtime for a container of `namespace` whose bundle is `bundle`. */
export function runcConfigFor(
  opts: RuntimeOptions,
  namespace: string,
  bundle: string,
  debug = false,
): RuncConfig {
  return {
    binary: opts.binaryName || "runc",
    root: `${opts.root || DEFAULT_RUNC_ROOT}/${namespace}`,
    log: `${bundle}/log.json`,
    systemdCgroup: opts.systemdCgroup,
    debug,
  };
}

const OPTIONS_FILE = "options.json";

/** Saves the settings in the bundle (for `delete`). */
export async function writeRuntimeOptions(bundle: string, opts: RuntimeOptions): Promise<void> {
  await Deno.writeTextFile(`${bundle}/${OPTIONS_FILE}`, JSON.stringify(opts), { mode: 0o600 });
}

/** Reads the settings saved in the bundle; defaults when there are none (the shim died before Create). */
export async function readRuntimeOptions(bundle: string): Promise<RuntimeOptions> {
  try {
    return {
      ...defaultRuntimeOptions(),
      ...JSON.parse(await Deno.readTextFile(`${bundle}/${OPTIONS_FILE}`)),
    };
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return defaultRuntimeOptions();
    throw err;
  }
}
