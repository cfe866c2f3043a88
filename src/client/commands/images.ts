/**
 * `berth images`: ls, tag, rm, check (and the transfer commands, once src/images serves them).
 * @module
 */
import { DEFAULT_SNAPSHOTTER } from "../../defaults/mod.ts";
import { Code } from "../../errdefs/mod.ts";
import { Images } from "../../gen/containerd/services/images/v1/images_pb.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { type CommandSpec, type GroupSpec, str, usageError } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { deleteEach, HintedError, hintNotFound } from "../errors.ts";
import { getImage, imageConfig, targetOf, totalSize, walkImage } from "../image.ts";
import {
  bytesSize,
  formatTable,
  labelsCell,
  NARROW,
  printJSON,
  printTable,
  write,
} from "../output.ts";

const lsHint = (ns: string) => `list images with: berth -n ${ns} images ls`;

type TransferName =
  | "importCommand"
  | "exportCommand"
  | "pullCommand"
  | "mountCommand"
  | "unmountCommand";

/**
 * The image transfer commands load src/images (archive, registry, layer
 * code) only when one of them runs; `images ls` stays light.
 */
function lazy(name: string, usage: string, key: TransferName): CommandSpec {
  return {
    name,
    usage,
    run: () => Promise.reject(new Error(`images ${name}: not loaded`)),
    resolve: async () => (await import("./image_transfer.ts"))[key],
  };
}

async function isUnpacked(
  conn: import("../connection.ts").Connection,
  snapshotter: string,
  chain: string,
): Promise<boolean> {
  if (chain === "") return false;
  try {
    await conn.service(Snapshots).stat({ snapshotter, key: chain });
    return true;
  } catch (err) {
    if ((err as { code?: Code }).code === Code.NotFound) return false;
    throw err;
  }
}

/** The `images` group. */
export const group: GroupSpec = {
  name: "images",
  aliases: ["image", "i"],
  usage: "manage images",
  commands: [
    {
      name: "list",
      aliases: ["ls"],
      usage: "list images known to berth",
      argsUsage: "[FILTER ...]",
      flags: {
        quiet: { type: "boolean", short: "q", help: "print only the image refs" },
        format: { type: "string", help: "output format: table or json", default: "table" },
      },
      async run({ flags, args, global }) {
        return await withConnection(global, async (conn) => {
          const { images } = await conn.service(Images).list({ filters: args });
          if (flags.quiet) {
            for (const i of images) console.log(i.name);
            return 0;
          }
          const rows = [];
          for (const image of images) {
            const t = targetOf(image);
            let size = 0;
            let platforms = "-";
            try {
              const w = await walkImage(conn, t);
              size = totalSize(w.present);
              if (w.platforms.length) platforms = w.platforms.join(",");
            } catch (err) {
              console.error(`berth: cannot read image ${image.name}: ${(err as Error).message}`);
            }
            rows.push({
              name: image.name,
              type: t.mediaType,
              digest: t.digest,
              size,
              platforms,
              labels: image.labels,
            });
          }
          if (flags.format === "json") printJSON(rows);
          else {
            printTable(
              ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"],
              rows.map((
                r,
              ) => [
                r.name,
                r.type,
                r.digest,
                bytesSize(r.size),
                r.platforms,
                labelsCell(r.labels),
              ]),
            );
          }
          return 0;
        });
      },
    },
    {
      name: "tag",
      usage: "tag an image",
      argsUsage: "SOURCE_REF TARGET_REF [TARGET_REF ...]",
      flags: { force: { type: "boolean", help: "replace an existing image with the new tag" } },
      async run({ flags, args, global }) {
        if (args.length < 2) {
          throw usageError("tag needs a source and at least one target reference");
        }
        await withConnection(global, async (conn) => {
          const src = await getImage(conn, args[0]);
          const svc = conn.service(Images);
          for (const name of args.slice(1)) {
            const image = { name, labels: src.labels, target: src.target };
            try {
              await svc.create({ image });
            } catch (err) {
              if ((err as { code?: Code }).code !== Code.AlreadyExists || !flags.force) {
                throw (err as { code?: Code }).code === Code.AlreadyExists
                  ? new HintedError(
                    Code.AlreadyExists,
                    `image "${name}" already exists`,
                    "replace it with: berth images tag --force",
                  )
                  : err;
              }
              await svc.update({ image });
            }
            console.log(name);
          }
        });
        return 0;
      },
    },
    {
      name: "delete",
      aliases: ["del", "remove", "rm"],
      usage: "remove one or more images by reference",
      argsUsage: "REF [REF ...]",
      flags: {
        sync: { type: "boolean", help: "synchronously remove image and all associated resources" },
      },
      async run({ flags, args, global }) {
        if (args.length === 0) throw usageError("please name at least one image to remove");
        await withConnection(global, (conn) =>
          deleteEach(args, async (name) => {
            await conn.service(Images).delete({ name, sync: flags.sync === true });
            console.log(name);
          }, (err) => hintNotFound(err, lsHint(global.namespace))));
        return 0;
      },
    },
    {
      name: "check",
      usage: "check existing images to ensure all content is available locally",
      argsUsage: "[FILTER ...]",
      flags: {
        quiet: { type: "boolean", short: "q", help: "print only the ready image refs" },
        snapshotter: {
          type: "string",
          help: "snapshotter to check unpacking in",
          default: DEFAULT_SNAPSHOTTER,
        },
      },
      async run({ flags, args, global }) {
        return await withConnection(global, async (conn) => {
          const { images } = await conn.service(Images).list({ filters: args });
          const rows = [["REF", "TYPE", "DIGEST", "STATUS", "SIZE", "UNPACKED"]];
          for (const image of images) {
            const t = targetOf(image);
            const w = await walkImage(conn, t);
            const missing = w.required.length - w.present.length;
            const complete = w.available && missing === 0;
            const status = w.available
              ? `${
                missing > 0 ? "incomplete" : "complete"
              } (${w.present.length}/${w.required.length})`
              : `unavailable (${w.present.length}/?)`;
            const size = w.available
              ? `${bytesSize(totalSize(w.present))}/${bytesSize(totalSize(w.required))}`
              : `${bytesSize(totalSize(w.present))}/?`;
            let unpacked = false;
            if (complete) {
              unpacked = await isUnpacked(
                conn,
                str(flags, "snapshotter") ?? DEFAULT_SNAPSHOTTER,
                (await imageConfig(conn, image)).chainId,
              );
            }
            if (flags.quiet) {
              if (complete) console.log(image.name);
            } else rows.push([image.name, t.mediaType, t.digest, status, size, String(unpacked)]);
          }
          if (!flags.quiet) write(formatTable(rows, NARROW, false));
          return 0;
        });
      },
    },
    lazy(
      "import",
      "import images from a tar archive, or a directory with --from-dir",
      "importCommand",
    ),
    lazy("export", "export images to a tar archive", "exportCommand"),
    lazy("pull", "pull an image from a registry", "pullCommand"),
    lazy("mount", "mount an image to a target path", "mountCommand"),
    lazy("unmount", "unmount the image from the target", "unmountCommand"),
  ],
};
