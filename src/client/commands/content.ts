/**
 * `berth content`: ls, get, rm, label (fetch comes with image pull).
 * @module
 */
import { Code } from "../../errdefs/mod.ts";
import { Content } from "../../gen/containerd/services/content/v1/content_pb.ts";
import { type GroupSpec, labelArgs, usageError } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { deleteEach, HintedError, hintNotFound } from "../errors.ts";
import {
  humanDuration,
  humanSize,
  labelsCell,
  listFlags,
  printList,
  printTable,
  TABBED,
  timestampText,
} from "../output.ts";

const lsHint = (ns: string) => `list content with: berth -n ${ns} content ls`;

/** The `content` group. */
export const group: GroupSpec = {
  name: "content",
  usage: "manage content",
  commands: [
    {
      name: "list",
      aliases: ["ls"],
      usage: "list all blobs in the store",
      argsUsage: "[FILTER ...]",
      flags: listFlags("the blob digest"),
      async run({ flags, args, global }) {
        const infos = await withConnection(global, async (c) => {
          const out = [];
          for await (const r of c.service(Content).list({ filters: args })) out.push(...r.info);
          return out;
        });
        printList(flags, infos, {
          key: (i) => i.digest,
          json: (i) => ({
            digest: i.digest,
            size: Number(i.size),
            createdAt: timestampText(i.createdAt),
            labels: i.labels,
          }),
          table: (is) => {
            const now = Date.now();
            const rows = is.map((i) => [
              i.digest,
              humanSize(i.size),
              humanDuration(now - Number(i.createdAt?.seconds ?? 0n) * 1000),
              labelsCell(i.labels),
            ]);
            printTable(["DIGEST", "SIZE", "AGE", "LABELS"], rows, TABBED, false);
          },
        });
        return 0;
      },
    },
    {
      name: "get",
      usage: "get the data for an object (written to stdout)",
      argsUsage: "DIGEST",
      async run({ args, global }) {
        if (!args[0]) throw usageError("please name a digest");
        if (Deno.stdout.isTerminal()) {
          throw new HintedError(
            Code.InvalidArgument,
            "refusing to write a blob to a terminal",
            `redirect it: berth content get ${args[0]} > FILE`,
          );
        }
        await withConnection(global, async (c) => {
          try {
            for await (const r of c.service(Content).read({ digest: args[0] })) {
              let off = 0;
              while (off < r.data.length) off += await Deno.stdout.write(r.data.subarray(off));
            }
          } catch (err) {
            throw hintNotFound(err, lsHint(global.namespace));
          }
        });
        return 0;
      },
    },
    {
      name: "delete",
      aliases: ["del", "remove", "rm"],
      usage: "permanently delete one or more blobs",
      argsUsage: "DIGEST [DIGEST ...]",
      async run({ args, global }) {
        if (args.length === 0) throw usageError("please name at least one digest");
        await withConnection(global, (c) =>
          deleteEach(args, async (digest) => {
            await c.service(Content).delete({ digest });
            console.log(digest);
          }, (err) => hintNotFound(err, lsHint(global.namespace))));
        return 0;
      },
    },
    {
      name: "label",
      usage: "add labels to content (an empty value clears)",
      argsUsage: "DIGEST [KEY=VALUE ...]",
      async run({ args, global }) {
        if (!args[0]) throw usageError("please name a digest");
        const labels = labelArgs(args.slice(1));
        const info = await withConnection(global, async (c) => {
          try {
            const { info } = await c.service(Content).update({
              info: { digest: args[0], labels },
              updateMask: { paths: Object.keys(labels).map((k) => `labels.${k}`) },
            });
            return info;
          } catch (err) {
            throw hintNotFound(err, lsHint(global.namespace));
          }
        });
        console.log(Object.entries(info?.labels ?? {}).map(([k, v]) => `${k}=${v}`).join(","));
        return 0;
      },
    },
    {
      name: "fetch",
      usage: "fetch all content for an image into berth (without unpacking it)",
      argsUsage: "[flags] REF",
      resolve: async () => {
        const { pullCommand } = await import("./image_transfer.ts");
        return {
          ...pullCommand,
          name: "fetch",
          flags: {
            ...pullCommand.flags,
            "skip-unpack": { type: "boolean", help: "always on for fetch", default: undefined },
          },
          run: (inv) => pullCommand.run({ ...inv, flags: { ...inv.flags, "skip-unpack": true } }),
        };
      },
      run: () => Promise.reject(new Error("content fetch: not loaded")),
    },
  ],
};
