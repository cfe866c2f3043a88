/**
 * The native snapshotter: every active snapshot is a full copy of its
 * parent, so it works on any file system, at the cost of space and time.
 *
 * @module
 */

import { runChecked } from "../spawn/mod.ts";
import { LocalSnapshotter } from "./local.ts";
import type { StoredSnapshot } from "./metastore.ts";
import type { Mount } from "./types.ts";

/**
 * Snapshots as plain directories `<root>/snapshots/<id>`, mounted by bind
 * mount. A view of a committed parent binds the parent read-only rather
 * than copying it.
 */
export class NativeSnapshotter extends LocalSnapshotter {
  private constructor(root: string) {
    super("native", root);
  }

  /** Opens the snapshotter at `root`, creating it when needed. */
  static async open(root: string): Promise<NativeSnapshotter> {
    await Deno.mkdir(`${root}/snapshots`, { recursive: true, mode: 0o700 });
    return new NativeSnapshotter(root);
  }

  protected layerDir(id: number): string {
    return this.snapshotDir(id);
  }

  protected override needsDir(kind: "active" | "view", parent: string): boolean {
    return kind === "active" || parent === "";
  }

  protected async populate(
    td: string,
    _kind: "active" | "view",
    parentIds: number[],
  ): Promise<void> {
    if (parentIds.length === 0) return;
    // GNU cp -a keeps owners, modes, times, hard links, devices and xattrs:
    // exactly what a faithful copy of a layer needs.
    await runChecked("cp", [
      "-a",
      "--reflink=auto",
      `${this.snapshotDir(parentIds[0])}/.`,
      `${td}/`,
    ]);
  }

  protected mountsFor(s: StoredSnapshot): Mount[] {
    const source = s.parentIds.length === 0 || s.kind === "active"
      ? this.snapshotDir(s.id)
      : this.snapshotDir(s.parentIds[0]);
    return [{ type: "bind", source, options: ["rbind", s.kind === "view" ? "ro" : "rw"] }];
  }
}
