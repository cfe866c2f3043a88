/**
 * Making an image from a plain directory (like `docker import`): on a
 * machine without a registry this is how users get an image at all.
 *
 * @module
 */

import { diffTar } from "../archive/mod.ts";
import { invalidArgument } from "../errdefs/mod.ts";
import type { Image, ImageBackend } from "./backend.ts";
import { putBytes } from "./blobs.ts";
import { writeLayer } from "./differ.ts";
import { labelChildren } from "./gclabels.ts";
import { OCI_CONFIG, OCI_INDEX, OCI_MANIFEST } from "../platforms/mod.ts";
import { DEFAULT_PLATFORM } from "../platforms/mod.ts";
import { normalizeName } from "./reference.ts";
import { unpackImage, type UnpackResult } from "./unpack.ts";

/** Options of {@link importDirectory}. */
export interface FromDirOptions {
  /** The image's default command. */
  cmd?: string[];
  /** Environment ("K=V"); default a standard PATH. */
  env?: string[];
  workingDir?: string;
  /** Unpack into snapshots (default true). */
  unpack?: boolean;
  snapshotter?: string;
  /**
   * Creation time written into the config. Default: the Unix epoch, so that
   * the same directory always gives the same image digest (the client passes
   * SOURCE_DATE_EPOCH when it is set).
   */
  created?: Date;
  /**
   * Modification times later than this are written as this (the
   * reproducible-builds rule for SOURCE_DATE_EPOCH); default: as read.
   */
  clampMtime?: Date;
}

const DEFAULT_ENV = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"];

/**
 * Imports directory `dir` as a one-layer linux/amd64 image `name`: a gzip
 * layer of its whole tree (owners, modes, links and xattrs kept), a config
 * with that layer's diff id, a manifest and an index, labelled for the
 * garbage collector and unpacked, under one lease.
 *
 * Reproducible: the same tree (contents, names, owners, modes, whole-second
 * mtimes, xattrs) gives the same digests, wherever it lies. Entries are
 * written in name order, the gzip header carries no time or name, and the
 * config's times are `created` (default the epoch), never the clock.
 */
export async function importDirectory(
  backend: ImageBackend,
  dir: string,
  name: string,
  opts: FromDirOptions = {},
): Promise<{ image: Image; unpacked?: UnpackResult }> {
  const st = await Deno.stat(dir).catch(() => undefined);
  if (!st?.isDirectory) throw invalidArgument(`${dir} is not a directory`);
  const imageName = normalizeName(name);
  const empty = await Deno.makeTempDir({ prefix: "berth-fromdir-" });
  try {
    return await backend.withLease(async (b) => {
      const layer = await writeLayer(
        b.content,
        diffTar({ lower: empty, upper: dir, clampMtime: opts.clampMtime }),
        `fromdir-${crypto.randomUUID()}`,
      );
      const created = (opts.created ?? new Date(0)).toISOString();
      const config = {
        created,
        architecture: DEFAULT_PLATFORM.architecture,
        os: DEFAULT_PLATFORM.os,
        config: {
          Env: opts.env ?? DEFAULT_ENV,
          ...(opts.cmd ? { Cmd: opts.cmd } : {}),
          ...(opts.workingDir ? { WorkingDir: opts.workingDir } : {}),
        },
        rootfs: { type: "layers", diff_ids: [layer.diffId] },
        history: [{ created, created_by: "berth images import --from-dir" }],
      };
      const enc = new TextEncoder();
      const configDesc = await putBytes(b.content, enc.encode(JSON.stringify(config)), OCI_CONFIG);
      const manifest = {
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: configDesc,
        layers: [layer.desc],
      };
      const manifestDesc = await putBytes(
        b.content,
        enc.encode(JSON.stringify(manifest)),
        OCI_MANIFEST,
      );
      const index = {
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: [{ ...manifestDesc, platform: DEFAULT_PLATFORM }],
      };
      const target = await putBytes(b.content, enc.encode(JSON.stringify(index)), OCI_INDEX);
      await labelChildren(b.content, target);
      const unpacked = opts.unpack === false
        ? undefined
        : await unpackImage(b, target, { snapshotter: opts.snapshotter });
      const image = await b.images.put({ name: imageName, target });
      return { image, unpacked };
    });
  } finally {
    await Deno.remove(empty, { recursive: true }).catch(() => {});
  }
}
