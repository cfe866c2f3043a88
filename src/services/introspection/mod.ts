/**
 * The Introspection service: every plugin with its status (what `ctr
 * plugins ls` prints) and the daemon's stable identity.
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { adaptFields, parseFilters } from "../../filters/mod.ts";
import {
  Introspection,
  type Plugin,
  PluginSchema,
} from "../../gen/containerd/services/introspection/v1/introspection_pb.ts";
import { type LoadedPlugin, type Registration, requirementsOf } from "../../plugin/mod.ts";
import { type RPCService, rpcService } from "../mod.ts";

/** A loaded plugin as the Introspection service reports it. */
export function pluginToProto(p: LoadedPlugin): Plugin {
  return create(PluginSchema, {
    type: p.type,
    id: p.id,
    requires: requirementsOf(p.registration),
    platforms: p.meta.platforms.map((x) => ({
      os: x.os,
      architecture: x.architecture,
      variant: x.variant ?? "",
    })),
    exports: p.meta.exports,
    capabilities: p.meta.capabilities,
    initErr: p.error === undefined ? undefined : { code: p.error.code, message: p.error.message },
  });
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/**
 * The daemon's uuid, kept in `path`: made (0600, atomically) on first use,
 * the same for every later start.
 */
export async function persistentUuid(path: string): Promise<string> {
  try {
    const text = (await Deno.readTextFile(path)).trim();
    if (UUID_RE.test(text)) return text;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  const uuid = crypto.randomUUID();
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true, mode: 0o700 });
  const tmp = `${path}.${uuid}.tmp`;
  await Deno.writeTextFile(tmp, uuid, { mode: 0o600 });
  await Deno.rename(tmp, path);
  return uuid;
}

/**
 * The Introspection service over `plugins` (read on each call, so plugins
 * loaded after this one are listed too) with the uuid kept at `uuidPath`.
 */
export function introspectionService(
  plugins: () => readonly LoadedPlugin[],
  uuidPath: string,
): RPCService {
  let uuid: Promise<string> | undefined;
  return rpcService(Introspection, {
    plugins: (req) => {
      const filter = parseFilters(req.filters);
      return {
        plugins: plugins()
          .filter((p) => filter.match(adaptFields({ type: p.type, id: p.id })))
          .map(pluginToProto),
      };
    },
    server: async () => {
      uuid ??= persistentUuid(uuidPath);
      try {
        return { uuid: await uuid };
      } catch (err) {
        uuid = undefined; // a read-only root may be fixed later; try again next call
        throw err;
      }
    },
  });
}

/** The plugin serving it: io.containerd.grpc.v1.introspection. */
export const introspectionPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "introspection",
  init: (ctx) => introspectionService(ctx.plugins, `${ctx.root}/uuid`),
};
