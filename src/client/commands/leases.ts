/**
 * `berth leases`: create, ls, rm, as ctr's.
 * @module
 */
import { Leases } from "../../gen/containerd/services/leases/v1/leases_pb.ts";
import { type GroupSpec, labelArgs, str, usageError } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { hintNotFound } from "../errors.ts";
import { labelsCell, listFlags, printList, printTable, timestampText } from "../output.ts";

/** The `leases` group. */
export const group: GroupSpec = {
  name: "leases",
  usage: "manage leases",
  commands: [
    {
      name: "list",
      aliases: ["ls"],
      usage: "list all active leases",
      argsUsage: "[FILTER ...]",
      flags: listFlags("the lease id"),
      async run({ flags, args, global }) {
        const { leases } = await withConnection(
          global,
          (c) => c.service(Leases).list({ filters: args }),
        );
        printList(flags, leases, {
          key: (l) => l.id,
          json: (l) => ({ id: l.id, createdAt: timestampText(l.createdAt), labels: l.labels }),
          table: (ls) =>
            printTable(
              ["ID", "CREATED AT", "LABELS"],
              ls.map((l) => [l.id, timestampText(l.createdAt), labelsCell(l.labels)]),
            ),
        });
        return 0;
      },
    },
    {
      name: "create",
      usage: "create lease",
      argsUsage: "[KEY=VALUE ...]",
      flags: {
        id: { type: "string", help: "the lease id (generated when not given)" },
        expires: {
          type: "string",
          short: "x",
          help: "expiry as a duration, e.g. 24h (label containerd.io/gc.expire)",
          default: "24h",
        },
      },
      async run({ flags, args, global }) {
        const labels = labelArgs(args);
        const { parseDuration } = await import("../cli.ts");
        const ms = parseDuration(str(flags, "expires") ?? "24h");
        if (ms > 0) {
          labels["containerd.io/gc.expire"] = new Date(Date.now() + ms).toISOString().replace(
            /\.\d+Z$/,
            "Z",
          );
        }
        const id = str(flags, "id") ?? `${Date.now()}-${crypto.randomUUID().slice(0, 8)}`;
        const { lease } = await withConnection(
          global,
          (c) => c.service(Leases).create({ id, labels }),
        );
        console.log(lease?.id ?? id);
        return 0;
      },
    },
    {
      name: "delete",
      aliases: ["del", "remove", "rm"],
      usage: "delete a lease",
      argsUsage: "LEASE [LEASE ...]",
      flags: {
        sync: {
          type: "boolean",
          help: "synchronously remove leases and all unreferenced resources",
        },
      },
      async run({ flags, args, global }) {
        if (args.length === 0) throw usageError("must specify at least one lease to delete");
        await withConnection(global, async (c) => {
          for (const id of args) {
            try {
              await c.service(Leases).delete({ id, sync: flags.sync === true });
            } catch (err) {
              throw hintNotFound(err, `list leases with: berth -n ${c.namespace} leases ls`);
            }
            console.log(id);
          }
        });
        return 0;
      },
    },
  ],
};
