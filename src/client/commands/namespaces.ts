/**
 * `berth namespaces`: create, ls, rm, label, as ctr's.
 * @module
 */
import { Code } from "../../errdefs/mod.ts";
import { Namespaces } from "../../gen/containerd/services/namespaces/v1/namespaces_pb.ts";
import { type GroupSpec, labelArgs, usageError } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { deleteEach, hintNotFound } from "../errors.ts";
import { labelsCell, listFlags, printList, printTable } from "../output.ts";

const LS_HINT = "list namespaces with: berth namespaces ls";

/** The `namespaces` group. */
export const group: GroupSpec = {
  name: "namespaces",
  aliases: ["namespace", "ns"],
  usage: "manage namespaces",
  commands: [
    {
      name: "create",
      aliases: ["c"],
      usage: "create a new namespace",
      argsUsage: "<name> [<key>=<value> ...]",
      async run({ args, global }) {
        if (!args[0]) throw usageError("please specify a namespace");
        const labels = labelArgs(args.slice(1));
        await withConnection(
          global,
          (c) => c.service(Namespaces).create({ namespace: { name: args[0], labels } }),
        );
        return 0;
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      usage: "list namespaces",
      flags: listFlags("the namespace name"),
      async run({ flags, global }) {
        const { namespaces } = await withConnection(global, (c) => c.service(Namespaces).list({}));
        printList(flags, namespaces, {
          key: (n) => n.name,
          json: (n) => ({ name: n.name, labels: n.labels }),
          table: (ns) =>
            printTable(["NAME", "LABELS"], ns.map((n) => [n.name, labelsCell(n.labels, "")])),
        });
        return 0;
      },
    },
    {
      name: "remove",
      aliases: ["rm"],
      usage: "remove one or more namespaces",
      argsUsage: "<name> [<name> ...]",
      flags: {
        cgroup: {
          type: "boolean",
          short: "c",
          help: "delete the namespace's cgroup (accepted for ctr compatibility)",
        },
      },
      async run({ args, global }) {
        if (args.length === 0) throw usageError("please specify at least one namespace to remove");
        await withConnection(global, (c) =>
          deleteEach(args, async (name) => {
            // A namespace that is not there is what the user wanted.
            await c.service(Namespaces).delete({ name }).catch((err) => {
              if ((err as { code?: Code }).code !== Code.NotFound) throw err;
            });
            console.log(name);
          }));
        return 0;
      },
    },
    {
      name: "label",
      usage: "set and clear labels for a namespace (an empty value clears)",
      argsUsage: "<name> [<key>=<value> ...]",
      async run({ args, global }) {
        if (!args[0]) throw usageError("please specify a namespace");
        const labels = labelArgs(args.slice(1));
        await withConnection(global, async (c) => {
          const ns = c.service(Namespaces);
          try {
            for (const [k, v] of Object.entries(labels)) {
              await ns.update({
                namespace: { name: args[0], labels: { [k]: v } },
                updateMask: { paths: [`labels.${k}`] },
              });
            }
          } catch (err) {
            throw hintNotFound(err, LS_HINT);
          }
        });
        return 0;
      },
    },
  ],
};
