/**
 * `berth containers`: create, ls, info, rm, label, as ctr's.
 * @module
 */
import { Code } from "../../errdefs/mod.ts";
import {
  type Container,
  Containers,
} from "../../gen/containerd/services/containers/v1/containers_pb.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { type GroupSpec, labelArgs, usageError } from "../cli.ts";
import { CONTAINER_FLAGS, createContainer, getContainer, specOf } from "../container.ts";
import { type Connection, withConnection } from "../connection.ts";
import { deleteEach, HintedError } from "../errors.ts";
import { listFlags, printJSON, printList, printTable, timestampText, WIDE } from "../output.ts";
import { deleteTaskIfStopped } from "../task.ts";

/** A container record as ctr's `containers info` prints it (Go field names). */
export function containerJSON(c: Container, withSpec = true): Record<string, unknown> {
  const extensions: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(c.extensions)) {
    extensions[k] = { type_url: v.typeUrl, value: v.value };
  }
  return {
    ID: c.id,
    Labels: Object.keys(c.labels).length ? c.labels : null,
    Image: c.image,
    Runtime: {
      Name: c.runtime?.name ?? "",
      Options: c.runtime?.options
        ? { type_url: c.runtime.options.typeUrl, value: c.runtime.options.value }
        : null,
    },
    SnapshotKey: c.snapshotKey,
    Snapshotter: c.snapshotter,
    CreatedAt: timestampText(c.createdAt),
    UpdatedAt: timestampText(c.updatedAt),
    Extensions: Object.keys(extensions).length ? extensions : null,
    ...(withSpec ? { Spec: specOf(c) ?? null } : {}),
  };
}

/** Deletes a container (its stopped task first) and, unless kept, its snapshot. */
export async function deleteContainer(
  conn: Connection,
  id: string,
  keepSnapshot: boolean,
): Promise<void> {
  const c = await getContainer(conn, id);
  await deleteTaskIfStopped(conn, id);
  await conn.service(Containers).delete({ id });
  if (!keepSnapshot && c.snapshotKey && c.snapshotter) {
    try {
      await conn.service(Snapshots).remove({ snapshotter: c.snapshotter, key: c.snapshotKey });
    } catch (err) {
      if ((err as { code?: Code }).code !== Code.NotFound) throw err;
    }
  }
}

/** The `containers` group. */
export const group: GroupSpec = {
  name: "containers",
  aliases: ["c", "container"],
  usage: "manage containers",
  commands: [
    {
      name: "create",
      usage: "create container",
      argsUsage: "[flags] Image|RootFS CONTAINER [COMMAND] [ARG...]",
      passthrough: 2,
      flags: CONTAINER_FLAGS,
      async run({ flags, args, global }) {
        const [ref, id, ...rest] = args;
        if (!ref) throw usageError("image ref must be provided");
        if (!id) throw usageError("container id must be provided");
        await withConnection(global, (conn) => createContainer(conn, flags, ref, id, rest));
        return 0;
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      usage: "list containers",
      argsUsage: "[FILTER ...]",
      flags: listFlags("the container id"),
      async run({ flags, args, global }) {
        const { containers } = await withConnection(
          global,
          (c) => c.service(Containers).list({ filters: args }),
        );
        printList(flags, containers, {
          key: (c) => c.id,
          json: (c) => containerJSON(c, false),
          table: (cs) =>
            printTable(
              ["CONTAINER", "IMAGE", "RUNTIME"],
              cs.map((c) => [c.id, c.image || "-", c.runtime?.name ?? ""]),
              WIDE,
            ),
        });
        return 0;
      },
    },
    {
      name: "info",
      usage: "get info about a container",
      argsUsage: "CONTAINER",
      flags: { spec: { type: "boolean", help: "only display the spec" } },
      async run({ flags, args, global }) {
        if (!args[0]) throw usageError("container id must be provided");
        const c = await withConnection(global, (conn) => getContainer(conn, args[0]));
        printJSON(flags.spec ? specOf(c) ?? null : containerJSON(c));
        return 0;
      },
    },
    {
      name: "delete",
      aliases: ["del", "remove", "rm"],
      usage: "delete one or more existing containers",
      argsUsage: "CONTAINER [CONTAINER ...]",
      flags: {
        "keep-snapshot": { type: "boolean", help: "do not clean up snapshot with container" },
      },
      async run({ flags, args, global }) {
        if (args.length === 0) throw usageError("must specify at least one container to delete");
        await withConnection(
          global,
          (conn) =>
            deleteEach(args, (id) => deleteContainer(conn, id, flags["keep-snapshot"] === true)),
        );
        return 0;
      },
    },
    {
      name: "label",
      usage: "set and clear labels for a container (an empty value clears)",
      argsUsage: "CONTAINER [KEY=VALUE ...]",
      async run({ args, global }) {
        if (!args[0]) throw usageError("container id must be provided");
        const labels = labelArgs(args.slice(1));
        const updated = await withConnection(global, async (conn) => {
          await getContainer(conn, args[0]);
          const paths = Object.keys(labels).map((k) => `labels.${k}`);
          const { container } = await conn.service(Containers).update({
            container: { id: args[0], labels },
            updateMask: { paths },
          });
          if (!container) throw new HintedError(Code.Internal, "daemon returned no container", "");
          return container;
        });
        console.log(Object.entries(updated.labels).map(([k, v]) => `${k}=${v}`).join(","));
        return 0;
      },
    },
  ],
};
