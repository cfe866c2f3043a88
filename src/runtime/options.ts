/**
 * Runtime options from the config's runtimes table, as the shim receives
 * them on stdin: for runc-style shims (runc's and berth's), a
 * containerd.runc.v1.Options message, keyed in the table as containerd's
 * config writes them (`BinaryName`, `SystemdCgroup`, ...).
 *
 * @module
 */

import { create, fromJson, type JsonObject, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errdefs/mod.ts";
import { OptionsSchema } from "../gen/containerd/runc/v1/options_pb.ts";

/** The type URL of runc's options as containerd marshals them (no type.googleapis.com/ prefix). */
const RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options";

/** Runtime types whose shims read containerd.runc.v1.Options. */
const RUNC_STYLE = new Set([
  "io.containerd.runc.v2",
  "io.containerd.runc.v1",
  "io.containerd.berth.v2",
]);

/**
 * The table's `options` for `runtimeType` as an Any, or undefined when
 * there are none or the runtime type's options are not known to berth.
 * An option runc's shim does not have is InvalidArgument, naming it.
 */
export function configRuntimeOptions(
  runtimeName: string,
  runtimeType: string,
  options: Record<string, unknown>,
): Any | undefined {
  if (Object.keys(options).length === 0 || !RUNC_STYLE.has(runtimeType)) return undefined;
  // containerd's TOML keys are the Go field names; protobuf JSON names are
  // the same in lower camel case (BinaryName -> binaryName).
  const json: JsonObject = {};
  for (const [k, v] of Object.entries(options)) {
    json[k.charAt(0).toLowerCase() + k.slice(1)] = v as JsonObject[string];
  }
  try {
    // The type URL containerd sends: Debian's runc shim looks the type up by
    // this exact name and refuses the "type.googleapis.com/" form anyPack writes.
    return create(AnySchema, {
      typeUrl: RUNC_OPTIONS_TYPE_URL,
      value: toBinary(OptionsSchema, fromJson(OptionsSchema, json)),
    });
  } catch (err) {
    throw invalidArgument(
      `runtime ${JSON.stringify(runtimeName)}: bad options in the runtimes table: ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  }
}
