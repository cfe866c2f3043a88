/**
 * `berth snapshots`: ls, info, usage, rm, tree, mounts, prepare, view, commit, label.
 * @module
 */
import { DEFAULT_SNAPSHOTTER } from "../../defaults/mod.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Kind } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Info } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Mount } from "../../gen/containerd/types/mount_pb.ts";
import { type CommandSpec, type GroupSpec, labelArgs, list, str, usageError } from "../cli.ts";
import { type Connection, withConnection } from "../connection.ts";
import { hintNotFound } from "../errors.ts";
import { humanSize, labelsCell, printJSON, printTable, timestampText } from "../output.ts";

const hint = (ns: string, s: string) =>
  `list snapshots with: berth -n ${ns} snapshots --snapshotter ${s} ls`;

function kindName(k: Kind): string {
  return ({ [Kind.VIEW]: "View", [Kind.ACTIVE]: "Active", [Kind.COMMITTED]: "Committed" } as Record<
    number,
    string
  >)[k] ?? "Unknown";
}

async function listAll(
  c: Connection,
  snapshotter: string,
  filters: string[] = [],
): Promise<Info[]> {
  const out: Info[] = [];
  for await (const r of c.service(Snapshots).list({ snapshotter, filters })) out.push(...r.info);
  return out;
}

function printMounts(target: string, mounts: Mount[]): void {
  for (const m of mounts) {
    console.log(`mount -t ${m.type} ${m.source} ${target} -o ${m.options.join(",")}`);
  }
}

function infoJSON(i: Info) {
  return {
    Kind: kindName(i.kind),
    Name: i.name,
    Parent: i.parent || undefined,
    Labels: i.labels,
    Created: timestampText(i.createdAt),
    Updated: timestampText(i.updatedAt),
  };
}

const snap = (flags: Record<string, unknown>) =>
  (flags.snapshotter as string | undefined) ?? DEFAULT_SNAPSHOTTER;

/**
 * `prepare` and `view`: the same command line, differing only in the RPC
 * (an active snapshot or a read-only one).
 */
function newSnapshotCommand(method: "prepare" | "view", usage: string): CommandSpec {
  return {
    name: method,
    usage,
    argsUsage: "KEY [PARENT]",
    flags: {
      target: {
        type: "string",
        short: "t",
        help: "mount target path; prints the mount command when set",
      },
      mounts: { type: "boolean", help: "print out snapshot mounts as JSON" },
      label: {
        type: "string",
        multiple: true,
        help: "label for the snapshot, e.g. containerd.io/gc.root=1 to keep it from the GC",
      },
    },
    async run({ flags, args, global }) {
      if (!args[0]) throw usageError("please name a snapshot key");
      const { mounts } = await withConnection(
        global,
        (c): Promise<{ mounts: Mount[] }> =>
          c.service(Snapshots)[method]({
            snapshotter: snap(flags),
            key: args[0],
            parent: args[1] ?? "",
            labels: labelArgs(list(flags, "label")),
          }),
      );
      const target = str(flags, "target");
      if (target) printMounts(target, mounts);
      if (flags.mounts) printJSON(mounts);
      return 0;
    },
  };
}

/** The `snapshots` group. */
export const group: GroupSpec = {
  name: "snapshots",
  aliases: ["snapshot"],
  usage: "manage snapshots",
  flags: {
    snapshotter: { type: "string", help: "snapshotter name", default: DEFAULT_SNAPSHOTTER },
  },
  commands: [
    {
      name: "list",
      aliases: ["ls"],
      usage: "list snapshots",
      argsUsage: "[FILTER ...]",
      flags: { format: { type: "string", help: "output format: table or json", default: "table" } },
      async run({ flags, args, global }) {
        const infos = await withConnection(global, (c) => listAll(c, snap(flags), args));
        if (flags.format === "json") printJSON(infos.map(infoJSON));
        else {printTable(
            ["KEY", "PARENT", "KIND"],
            infos.map((i) => [i.name, i.parent, kindName(i.kind)]),
          );}
        return 0;
      },
    },
    {
      name: "info",
      usage: "get info about a snapshot",
      argsUsage: "KEY",
      async run({ flags, args, global }) {
        if (!args[0]) throw usageError("please name a snapshot key");
        const { info } = await withConnection(
          global,
          (c) =>
            c.service(Snapshots).stat({ snapshotter: snap(flags), key: args[0] }).catch((e) => {
              throw hintNotFound(e, hint(global.namespace, snap(flags)));
            }),
        );
        printJSON(info ? infoJSON(info) : null);
        return 0;
      },
    },
    {
      name: "usage",
      usage: "usage snapshots",
      argsUsage: "[KEY ...]",
      flags: { b: { type: "boolean", help: "display size in bytes" } },
      async run({ flags, args, global }) {
        const rows = await withConnection(global, async (c) => {
          const keys = args.length ? args : (await listAll(c, snap(flags))).map((i) => i.name);
          const out: string[][] = [];
          for (const key of keys) {
            const u = await c.service(Snapshots).usage({ snapshotter: snap(flags), key }).catch(
              (e) => {
                throw hintNotFound(e, hint(global.namespace, snap(flags)));
              },
            );
            out.push([key, flags.b ? String(u.size) : humanSize(u.size), String(u.inodes)]);
          }
          return out;
        });
        printTable(["KEY", "SIZE", "INODES"], rows);
        return 0;
      },
    },
    {
      name: "delete",
      aliases: ["del", "remove", "rm"],
      usage: "remove snapshots",
      argsUsage: "KEY [KEY ...]",
      async run({ flags, args, global }) {
        if (args.length === 0) throw usageError("please name at least one snapshot key");
        await withConnection(global, async (c) => {
          for (const key of args) {
            await c.service(Snapshots).remove({ snapshotter: snap(flags), key }).catch((e) => {
              throw hintNotFound(e, hint(global.namespace, snap(flags)));
            });
          }
        });
        return 0;
      },
    },
    newSnapshotCommand("prepare", "prepare a snapshot from a committed snapshot"),
    newSnapshotCommand("view", "create a read-only snapshot from a committed snapshot"),
    {
      name: "mounts",
      aliases: ["m", "mount"],
      usage: "mount gets mount commands for the snapshots",
      argsUsage: "TARGET KEY",
      async run({ flags, args, global }) {
        if (args.length !== 2) throw usageError("mounts needs a target and a snapshot key");
        const { mounts } = await withConnection(
          global,
          (c) =>
            c.service(Snapshots).mounts({ snapshotter: snap(flags), key: args[1] }).catch((e) => {
              throw hintNotFound(e, hint(global.namespace, snap(flags)));
            }),
        );
        printMounts(args[0], mounts);
        return 0;
      },
    },
    {
      name: "commit",
      usage: "commit an active snapshot into the provided name",
      argsUsage: "NAME KEY",
      flags: {
        label: { type: "string", multiple: true, help: "label for the committed snapshot" },
      },
      async run({ flags, args, global }) {
        if (args.length !== 2) throw usageError("commit needs a name and an active snapshot key");
        await withConnection(
          global,
          (c) =>
            c.service(Snapshots).commit({
              snapshotter: snap(flags),
              name: args[0],
              key: args[1],
              labels: labelArgs(list(flags, "label")),
            }).catch((e) => {
              throw hintNotFound(e, hint(global.namespace, snap(flags)));
            }),
        );
        return 0;
      },
    },
    {
      name: "tree",
      usage: "display tree view of snapshot branches",
      async run({ flags, global }) {
        const infos = await withConnection(global, (c) => listAll(c, snap(flags)));
        const children = new Map<string, string[]>();
        const names = new Set(infos.map((i) => i.name));
        for (const i of infos) {
          if (!i.parent) continue;
          if (!names.has(i.parent)) names.add(i.parent);
          children.set(i.parent, [...(children.get(i.parent) ?? []), i.name]);
        }
        const roots = [...names].filter((n) => !infos.find((i) => i.name === n)?.parent);
        const print = (name: string, level: number) => {
          console.log(`${"  ".repeat(level)}${level > 0 ? "\\_" : ""} ${name}`);
          for (const c of children.get(name) ?? []) print(c, level + 1);
        };
        for (const r of roots) print(r, 0);
        return 0;
      },
    },
    {
      name: "label",
      usage: "add labels to a snapshot (an empty value clears)",
      argsUsage: "KEY [NAME=VALUE ...]",
      async run({ flags, args, global }) {
        if (!args[0]) throw usageError("please name a snapshot key");
        const labels = labelArgs(args.slice(1));
        const { info } = await withConnection(global, (c) =>
          c.service(Snapshots).update({
            snapshotter: snap(flags),
            info: { name: args[0], labels },
            updateMask: { paths: Object.keys(labels).map((k) => `labels.${k}`) },
          }).catch((e) => {
            throw hintNotFound(e, hint(global.namespace, snap(flags)));
          }));
        console.log(labelsCell(info?.labels, ""));
        return 0;
      },
    },
  ],
};
