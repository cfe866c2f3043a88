/**
 * `images import|export|pull|mount|unmount`: src/images' operations run in
 * this process over the daemon's services (see ../backend.ts), as ctr runs
 * containerd's client library.
 * @module
 */
import { DEFAULT_SNAPSHOTTER } from "../../defaults/mod.ts";
import { Code } from "../../errdefs/mod.ts";
import {
  exportArchive,
  importArchive,
  importDirectory,
  pullImage,
  type PullProgress,
} from "../../images/mod.ts";
import { Snapshots } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { remoteBackend } from "../backend.ts";
import { type CommandSpec, list, str, usageError } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { HintedError, hintNotFound } from "../errors.ts";
import { getImage, imageConfig } from "../image.ts";
import { bytesSize, write } from "../output.ts";

/**
 * SOURCE_DATE_EPOCH (reproducible-builds.org: whole seconds since the epoch)
 * as a date, when set; anything else in it is a usage error, not ignored.
 */
function sourceDateEpoch(): Date | undefined {
  const v = Deno.env.get("SOURCE_DATE_EPOCH");
  if (v === undefined || v === "") return undefined;
  if (!/^\d{1,12}$/.test(v)) {
    throw usageError(
      `SOURCE_DATE_EPOCH must be whole seconds since 1970 (got ${JSON.stringify(v)})`,
    );
  }
  return new Date(Number(v) * 1000);
}

/** `images import`. */
export const importCommand: CommandSpec = {
  name: "import",
  usage:
    "import images from a tar archive (OCI layout or docker save), or a directory with --from-dir",
  argsUsage: "[flags] FILE|- , or --from-dir DIR NAME",
  flags: {
    "base-name": { type: "string", help: "base image name for entries named only by a tag" },
    "index-name": { type: "string", help: "image name to keep the archive's whole index under" },
    "no-unpack": { type: "boolean", help: "skip unpacking the images" },
    snapshotter: {
      type: "string",
      help: "snapshotter to unpack into",
      default: DEFAULT_SNAPSHOTTER,
    },
    "from-dir": {
      type: "boolean",
      help:
        "import directory DIR as a one-layer image NAME (the same tree gives the same digest; SOURCE_DATE_EPOCH sets its times)",
    },
    cmd: {
      type: "string",
      multiple: true,
      help: "with --from-dir: the image's default command (one word per flag)",
    },
    env: {
      type: "string",
      multiple: true,
      help: "with --from-dir: an environment variable KEY=VALUE",
    },
    cwd: { type: "string", help: "with --from-dir: the working directory" },
    "all-platforms": {
      type: "boolean",
      help: "accepted for ctr compatibility (berth imports every manifest)",
    },
    digests: { type: "boolean", help: "accepted for ctr compatibility" },
  },
  async run({ flags, args, global }) {
    const snapshotter = str(flags, "snapshotter") ?? DEFAULT_SNAPSHOTTER;
    const unpack = flags["no-unpack"] !== true;
    if (flags["from-dir"]) {
      if (args.length !== 2) {
        throw usageError("images import --from-dir needs a directory and an image name");
      }
      const epoch = sourceDateEpoch();
      const r = await withConnection(
        global,
        (conn) =>
          importDirectory(remoteBackend(conn), args[0], args[1], {
            cmd: list(flags, "cmd").length ? list(flags, "cmd") : undefined,
            env: list(flags, "env").length ? list(flags, "env") : undefined,
            workingDir: str(flags, "cwd"),
            unpack,
            snapshotter,
            created: epoch,
            clampMtime: epoch,
          }),
      );
      console.log(
        `${r.image.name} ${r.image.target.digest}${r.unpacked ? ` unpacked (${snapshotter})` : ""}`,
      );
      return 0;
    }
    if (!args[0]) throw usageError("please name an archive to import (or - for stdin)");
    const file = args[0] === "-" ? undefined : await Deno.open(args[0]).catch((err) => {
      throw new HintedError(
        Code.NotFound,
        `cannot open ${args[0]}: ${(err as Error).message}`,
        "name an OCI or docker-save tar archive",
      );
    });
    const total = file ? (await file.stat()).size : 0;
    const meter = byteMeter(args[0] === "-" ? "stdin" : args[0], total, Deno.stdout.isTerminal());
    const stream = (file ? file.readable : Deno.stdin.readable).pipeThrough(meter.counter);
    const r = await withConnection(global, (conn) =>
      importArchive(remoteBackend(conn), stream, {
        baseName: str(flags, "base-name"),
        indexName: str(flags, "index-name"),
        unpack,
        snapshotter,
      }));
    meter.finish();
    for (const image of r.images) {
      if (unpack) console.log(`unpacking ${image.name} (${image.target.digest})...done`);
      else console.log(image.name);
    }
    return 0;
  },
};

/** `images export`. */
export const exportCommand: CommandSpec = {
  name: "export",
  usage: "export images to a tar archive",
  argsUsage: "[flags] FILE|- REF [REF ...]",
  async run({ args, global }) {
    if (args.length < 2) {
      throw usageError("export needs an output file (or -) and at least one image");
    }
    const [out, ...names] = args;
    if (out === "-" && Deno.stdout.isTerminal()) {
      throw usageError("refusing to write an archive to a terminal; redirect it or name a file");
    }
    await withConnection(global, async (conn) => {
      for (const n of names) await getImage(conn, n);
      const stream = await exportArchive(remoteBackend(conn), names);
      if (out === "-") await stream.pipeTo(Deno.stdout.writable, { preventClose: true });
      else {
        const f = await Deno.open(out, { write: true, create: true, truncate: true });
        await stream.pipeTo(f.writable);
      }
    });
    return 0;
  },
};

/**
 * Progress of reading an archive: one bar redrawn in place on a terminal,
 * a line per quarter otherwise (CI logs), with bytes and rate.
 */
export function byteMeter(
  name: string,
  total: number,
  tty: boolean,
): { counter: TransformStream<Uint8Array, Uint8Array>; finish(): void } {
  const started = Date.now();
  let done = 0;
  let lastDraw = 0;
  let quarter = 0;
  const text = () => {
    const secs = Math.max(0.001, (Date.now() - started) / 1000);
    const width = 30;
    const filled = total > 0 ? Math.min(width, Math.round(width * done / total)) : 0;
    const bar = total > 0 ? ` |${"+".repeat(filled)}${"-".repeat(width - filled)}|` : "";
    return `importing ${name}${bar} ${bytesSize(done)}${total > 0 ? `/${bytesSize(total)}` : ""} ${
      bytesSize(done / secs)
    }/s`;
  };
  const draw = (force: boolean) => {
    if (tty) {
      if (!force && Date.now() - lastDraw < 100) return;
      lastDraw = Date.now();
      write(`\r\x1b[2K${text()}`);
    } else if (total > 0) {
      while (quarter < 4 && done >= total * (quarter + 1) / 4) {
        quarter++;
        console.log(text());
      }
    }
  };
  return {
    counter: new TransformStream({
      transform(chunk, ctl) {
        done += chunk.length;
        draw(false);
        ctl.enqueue(chunk);
      },
    }),
    finish() {
      if (tty) {
        draw(true);
        write("\n");
      } else if (total === 0) console.log(text());
    },
  };
}

/** Shows pull progress: redrawn bars on a terminal, one line per step otherwise. */
export function progressPrinter(tty: boolean): { update(p: PullProgress): void; finish(): void } {
  const rows = new Map<string, PullProgress & { started: number }>();
  let drawn = 0;
  let last = 0;
  const line = (p: PullProgress & { started: number }) => {
    const secs = Math.max(0.001, (Date.now() - p.started) / 1000);
    const rate = p.status === "downloading"
      ? ` ${bytesSize((p.offset - (p.resumedAt ?? 0)) / secs)}/s`
      : "";
    const width = 30;
    const filled = p.total > 0 ? Math.min(width, Math.round(width * p.offset / p.total)) : 0;
    const bar = `|${"+".repeat(filled)}${"-".repeat(width - filled)}|`;
    return `${p.digest.slice(0, 19).padEnd(19)} ${p.status.padEnd(11)} ${bar} ${
      bytesSize(p.offset)
    }/${bytesSize(p.total)}${rate}`;
  };
  const draw = (force: boolean) => {
    if (!force && Date.now() - last < 100) return;
    last = Date.now();
    let text = drawn > 0 ? `\x1b[${drawn}A` : "";
    for (const p of rows.values()) text += `\x1b[2K${line(p)}\n`;
    drawn = rows.size;
    write(text);
  };
  return {
    update(p) {
      const prev = rows.get(p.digest);
      const changed = prev?.status !== p.status;
      rows.set(p.digest, { ...p, started: prev?.started ?? Date.now() });
      if (tty) draw(changed);
      else if (changed) {
        console.log(
          `${p.digest} ${p.status} ${
            p.total > 0 ? `${bytesSize(p.offset)}/${bytesSize(p.total)}` : ""
          }`.trimEnd(),
        );
      }
    },
    finish() {
      if (tty) draw(true);
    },
  };
}

/** `images pull`. */
export const pullCommand: CommandSpec = {
  name: "pull",
  usage: "pull an image from a registry",
  argsUsage: "[flags] REF",
  flags: {
    "plain-http": { type: "boolean", help: "use http:// instead of https://" },
    user: { type: "string", short: "u", help: "registry credentials USER[:PASSWORD]" },
    snapshotter: {
      type: "string",
      help: "snapshotter to unpack into",
      default: DEFAULT_SNAPSHOTTER,
    },
    "skip-unpack": { type: "boolean", help: "do not unpack the image" },
    "all-platforms": { type: "boolean", help: "accepted for ctr compatibility" },
  },
  async run({ flags, args, global }) {
    if (!args[0]) throw usageError("please name an image to pull");
    const [username, password] = (str(flags, "user") ?? "").split(/:(.*)/s, 2);
    const progress = progressPrinter(Deno.stdout.isTerminal());
    const r = await withConnection(global, (conn) =>
      pullImage(remoteBackend(conn), args[0], {
        plainHttp: flags["plain-http"] === true,
        username: username || undefined,
        password: password || undefined,
        unpack: flags["skip-unpack"] !== true,
        snapshotter: str(flags, "snapshotter") ?? DEFAULT_SNAPSHOTTER,
        onProgress: (p) => progress.update(p),
      }));
    progress.finish();
    console.log(
      `${r.image.name}: ${r.image.target.digest} (fetched ${r.fetched}, existing ${r.existing})`,
    );
    return 0;
  },
};

/** `images mount`. */
export const mountCommand: CommandSpec = {
  name: "mount",
  usage: "mount an image to a target path",
  argsUsage: "[flags] REF TARGET",
  flags: {
    snapshotter: { type: "string", help: "snapshotter name", default: DEFAULT_SNAPSHOTTER },
    rw: { type: "boolean", help: "a writable snapshot instead of a read-only view" },
  },
  async run({ flags, args, global }) {
    if (args.length !== 2) throw usageError("mount needs an image and a target directory");
    const [ref, target] = args;
    const snapshotter = str(flags, "snapshotter") ?? DEFAULT_SNAPSHOTTER;
    const { mountAll } = await import("../../mount/mod.ts");
    await withConnection(global, async (conn) => {
      const image = await getImage(conn, ref);
      const { chainId } = await imageConfig(conn, image);
      const svc = conn.service(Snapshots);
      const req = { snapshotter, key: target, parent: chainId };
      const { mounts } = await (flags.rw ? svc.prepare(req) : svc.view(req)).catch((e) => {
        throw hintNotFound(
          e,
          `is ${ref} unpacked in ${snapshotter}? check with: berth images check`,
        );
      });
      await mountAll(mounts, target);
    });
    console.log(target);
    return 0;
  },
};

/** `images unmount`. */
export const unmountCommand: CommandSpec = {
  name: "unmount",
  usage: "unmount the image from the target",
  argsUsage: "[flags] TARGET",
  flags: {
    snapshotter: { type: "string", help: "snapshotter name", default: DEFAULT_SNAPSHOTTER },
    rm: { type: "boolean", help: "remove the snapshot after unmounting" },
  },
  async run({ flags, args, global }) {
    if (args.length !== 1) throw usageError("unmount needs the target directory");
    const { unmountAll } = await import("../../mount/mod.ts");
    await unmountAll(args[0]);
    if (flags.rm) {
      await withConnection(
        global,
        (conn) =>
          conn.service(Snapshots).remove({
            snapshotter: str(flags, "snapshotter") ?? DEFAULT_SNAPSHOTTER,
            key: args[0],
          }),
      );
    }
    console.log(args[0]);
    return 0;
  },
};
