/**
 * The overlayfs snapshotter: each snapshot is an upper directory; an
 * active snapshot mounts its parents' upper directories as lower layers.
 *
 * @module
 */

import { unimplemented } from "../errdefs/mod.ts";
import { LocalSnapshotter } from "./local.ts";
import type { StoredSnapshot } from "./metastore.ts";
import type { Mount } from "./types.ts";
import { exists } from "../fsutil/mod.ts";

async function overlaySupported(): Promise<boolean> {
  try {
    return /\toverlay$/m.test(await Deno.readTextFile("/proc/filesystems"));
  } catch {
    return false;
  }
}

/**
 * Snapshots as overlayfs layers under `<root>/snapshots/<id>/{fs,work}`.
 * Mounts are returned, never performed: a snapshot without parents is a
 * bind mount of its `fs`; a view of a single layer binds that layer
 * read-only; everything else is an overlay mount.
 */
export class OverlaySnapshotter extends LocalSnapshotter {
  private constructor(root: string, private readonly indexOff: boolean) {
    super("overlayfs", root);
  }

  /** Opens the snapshotter at `root` (creating it); Unimplemented without kernel overlayfs. */
  static async open(root: string): Promise<OverlaySnapshotter> {
    if (!await overlaySupported()) {
      throw unimplemented(
        "the overlayfs snapshotter needs overlay support in the kernel (see /proc/filesystems)",
      );
    }
    await Deno.mkdir(`${root}/snapshots`, { recursive: true, mode: 0o700 });
    // Where the kernel knows the index feature, turn it off: layers are
    // shared between mounts, which the index would refuse.
    const indexOff = await exists("/sys/module/overlay/parameters/index", { followSymlinks: true });
    return new OverlaySnapshotter(root, indexOff);
  }

  /** The upper directory of snapshot `id`, where its own files live. */
  upperPath(id: number): string {
    return `${this.snapshotDir(id)}/fs`;
  }

  protected layerDir(id: number): string {
    return this.upperPath(id);
  }

  protected async populate(
    td: string,
    kind: "active" | "view",
    parentIds: number[],
  ): Promise<void> {
    await Deno.mkdir(`${td}/fs`, { mode: 0o755 });
    await Deno.chmod(`${td}/fs`, 0o755);
    if (kind === "active") await Deno.mkdir(`${td}/work`, { mode: 0o711 });
    if (parentIds.length > 0) {
      // The root of the merged view keeps the owner of the layer below it.
      const st = await Deno.stat(this.upperPath(parentIds[0]));
      await Deno.chown(`${td}/fs`, st.uid, st.gid);
    }
  }

  protected mountsFor(s: StoredSnapshot): Mount[] {
    if (s.parentIds.length === 0) {
      return [{
        type: "bind",
        source: this.upperPath(s.id),
        options: [s.kind === "view" ? "ro" : "rw", "rbind"],
      }];
    }
    const options: string[] = [];
    if (this.indexOff) options.push("index=off");
    if (s.kind === "active") {
      options.push(`workdir=${this.snapshotDir(s.id)}/work`, `upperdir=${this.upperPath(s.id)}`);
    } else if (s.parentIds.length === 1) {
      // overlayfs needs two lower layers without an upper one: bind the single layer.
      return [{ type: "bind", source: this.upperPath(s.parentIds[0]), options: ["ro", "rbind"] }];
    }
    options.push(`lowerdir=${s.parentIds.map((id) => this.upperPath(id)).join(":")}`);
    return [{ type: "overlay", source: "overlay", options }];
  }
}
