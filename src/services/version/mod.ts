/**
 * The Version service: berth's version, as `ctr version` shows it.
 * @module
 */

import { Version } from "../../gen/containerd/services/version/v1/version_pb.ts";
import type { Registration } from "../../plugin/mod.ts";
import { VERSION } from "../../version.ts";
import { type RPCService, rpcService } from "../mod.ts";

/** The Version service answering `version` and `revision`. */
export function versionService(version = VERSION, revision = ""): RPCService {
  return rpcService(Version, { version: () => ({ version, revision }) });
}

/** The plugin serving it: io.containerd.grpc.v1.version. */
export const versionPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "version",
  init: () => versionService(VERSION, Deno.env.get("BERTH_REVISION") ?? ""),
};
