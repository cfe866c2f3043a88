/**
 * Decoding the runtime settings containerd sends with Create
 * (containerd.runc.v1.Options in an Any).
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errdefs/mod.ts";
import { OptionsSchema } from "../gen/containerd/runc/v1/options_pb.ts";
import { defaultRuntimeOptions, type RuntimeOptions } from "./options.ts";

/**
 * Decodes the Create request's options Any. Empty means defaults; a type
 * other than containerd.runc.v1.Options is refused, since silently ignoring
 * settings would run the container differently from what was asked.
 */
export function decodeRuntimeOptions(any: Any | undefined): RuntimeOptions {
  const opts = defaultRuntimeOptions();
  if (!any || any.typeUrl === "") return opts;
  const name = any.typeUrl.slice(any.typeUrl.lastIndexOf("/") + 1);
  if (name !== "containerd.runc.v1.Options") {
    throw invalidArgument(
      `unsupported runtime options type "${any.typeUrl}" (want containerd.runc.v1.Options)`,
    );
  }
  const o = fromBinary(OptionsSchema, any.value);
  return {
    binaryName: o.binaryName,
    root: o.root,
    systemdCgroup: o.systemdCgroup,
    noPivotRoot: o.noPivotRoot,
    noNewKeyring: o.noNewKeyring,
    ioUid: o.ioUid,
    ioGid: o.ioGid,
    criuPath: o.criuPath,
    criuWorkPath: o.criuWorkPath,
  };
}
