/**
 * `berth version`: client and daemon versions, in ctr's layout.
 * @module
 */
import { Introspection } from "../../gen/containerd/services/introspection/v1/introspection_pb.ts";
import { Version } from "../../gen/containerd/services/version/v1/version_pb.ts";
import { VERSION } from "../../version.ts";
import type { CommandSpec } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { printJSON, write } from "../output.ts";

/** The `version` command. */
export const command: CommandSpec = {
  name: "version",
  usage: "print the client and server versions",
  flags: { format: { type: "string", help: "output format: table or json", default: "table" } },
  async run({ flags, global }) {
    const json = flags.format === "json";
    const client =
      `Client:\n  Version:  ${VERSION}\n  Revision: \n  Deno version: ${Deno.version.deno}\n\n`;
    if (!json) write(client);
    return await withConnection(global, async (conn) => {
      // One round trip for both (the connection carries many calls at once).
      const [v, server] = await Promise.all([
        conn.service(Version).version({}),
        conn.service(Introspection).server({}),
      ]);
      if (json) {
        printJSON({
          client: { version: VERSION, deno: Deno.version.deno },
          server: { version: v.version, revision: v.revision, uuid: server.uuid },
        });
        return 0;
      }
      write(
        `Server:\n  Version:  ${v.version}\n  Revision: ${v.revision}\n  UUID: ${server.uuid}\n`,
      );
      if (v.version !== VERSION) console.error("WARNING: version mismatch");
      return 0;
    });
  },
};
