/**
 * `berth plugins ls`: what the daemon loaded, as ctr shows it.
 * @module
 */
import { Introspection } from "../../gen/containerd/services/introspection/v1/introspection_pb.ts";
import type { Platform } from "../../gen/containerd/types/platform_pb.ts";
import type { GroupSpec } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { formatTable, printJSON, printTable, WIDE, write } from "../output.ts";

function platformText(ps: Platform[]): string {
  if (ps.length === 0) return "-";
  return [...new Set(ps.map((p) => [p.os, p.architecture, p.variant].filter((s) => s).join("/")))]
    .sort().join(",");
}

/** The `plugins` group. */
export const group: GroupSpec = {
  name: "plugins",
  aliases: ["plugin"],
  usage: "provides information about berth plugins",
  commands: [{
    name: "list",
    aliases: ["ls"],
    usage: "lists berth plugins",
    argsUsage: "[FILTER ...]",
    flags: {
      quiet: { type: "boolean", short: "q", help: "print only the plugin ids" },
      detailed: {
        type: "boolean",
        short: "d",
        help: "print detailed information about each plugin",
      },
      format: { type: "string", help: "output format: table or json", default: "table" },
    },
    async run({ flags, args, global }) {
      const { plugins } = await withConnection(
        global,
        (c) => c.service(Introspection).plugins({ filters: args }),
      );
      if (flags.quiet) {
        for (const p of plugins) console.log(p.id);
      } else if (flags.format === "json") {
        printJSON(plugins.map((p) => ({
          type: p.type,
          id: p.id,
          requires: p.requires,
          platforms: platformText(p.platforms),
          exports: p.exports,
          capabilities: p.capabilities,
          status: p.initErr ? "error" : "ok",
          error: p.initErr?.message,
        })));
      } else if (flags.detailed) {
        const rows: string[][] = [];
        plugins.forEach((p, i) => {
          if (i > 0) rows.push(["", "", "", ""]);
          rows.push(["Type:", ` ${p.type}`], ["ID:", ` ${p.id}`]);
          if (p.requires.length) {
            rows.push(["Requires:", ""], ...p.requires.map((r) => ["", ` ${r}`]));
          }
          if (p.platforms.length) rows.push(["Platforms:", ` ${platformText(p.platforms)}`]);
          const ex = Object.entries(p.exports);
          if (ex.length) {
            rows.push(["Exports:", ""], ...ex.map(([k, v]) => ["", ` ${k} `, ` ${v}`]));
          }
          if (p.capabilities.length) rows.push(["Capabilities:", ` ${p.capabilities.join(",")}`]);
          if (p.initErr) {
            rows.push(["Error:", ""], ["", " Code:", ` ${p.initErr.code}`], [
              "",
              " Message:",
              ` ${p.initErr.message}`,
            ]);
          }
        });
        write(formatTable(rows, WIDE, false));
      } else {
        printTable(
          ["TYPE", "ID", "PLATFORMS", "STATUS"],
          plugins.map((p) => [p.type, p.id, platformText(p.platforms), p.initErr ? "error" : "ok"]),
          WIDE,
        );
      }
      return 0;
    },
  }],
};
