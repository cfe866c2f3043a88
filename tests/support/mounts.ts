/**
 * Undoing what container runs leave on the host: mounts under a temporary
 * directory, and the per-namespace cgroup and runc state directories that
 * runc creates outside it. Only paths derived from the caller's own unique
 * names are touched.
 * @module
 */

import { umount2, Unmount } from "../../ffi/mod.ts";

/** One line of /proc/self/mountinfo, the parts tests need. */
export interface MountEntry {
  mountPoint: string;
  fsType: string;
}

// mountinfo escapes space, tab, newline and backslash as octal (\040 ...).
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct) => String.fromCharCode(parseInt(oct, 8)));
}

/** The mounts this process can see, from /proc/self/mountinfo. */
export function readMounts(): MountEntry[] {
  const entries: MountEntry[] = [];
  for (const line of Deno.readTextFileSync("/proc/self/mountinfo").split("\n")) {
    if (!line) continue;
    const fields = line.split(" ");
    const dash = fields.indexOf("-");
    if (fields.length < 5 || dash < 0) continue;
    entries.push({ mountPoint: unescapeMountPath(fields[4]), fsType: fields[dash + 1] });
  }
  return entries;
}

/** Mount points at or under `dir`, deepest first (the order to unmount them in). */
export function mountsUnder(dir: string): string[] {
  const prefix = dir.endsWith("/") ? dir : dir + "/";
  const points = readMounts()
    .map((m) => m.mountPoint)
    .filter((p) => p === dir || p.startsWith(prefix));
  return [...new Set(points)].sort((a, b) => b.length - a.length);
}

/** Lazily unmounts `target` (MNT_DETACH). Throws when it is still mounted afterwards. */
export function unmountLazy(target: string): void {
  try {
    umount2(target, Unmount.DETACH);
  } catch (err) {
    // EINVAL: not (or no longer) a mount point, which is what we want.
    if (mountsUnder(target).includes(target)) throw err;
  }
}

/** Unmounts everything mounted at or under `dir`, deepest first. */
export function unmountAllUnder(dir: string): void {
  // A lazy unmount of a parent can take children with it; re-read each pass.
  for (let pass = 0; pass < 5; pass++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const p of points) {
      try {
        unmountLazy(p);
      } catch {
        // Busy or gone; the next pass looks again.
      }
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`still mounted under ${dir}: ${left.join(", ")}`);
}

/** Mount points of the cgroup hierarchies (v1 controllers and the v2 tree). */
export function cgroupRoots(): string[] {
  return readMounts()
    .filter((m) => m.fsType === "cgroup" || m.fsType === "cgroup2")
    .map((m) => m.mountPoint);
}

function removeDirTree(path: string): void {
  // cgroup directories cannot be removed recursively; rmdir each, leaves first.
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(path)];
  } catch {
    return;
  }
  for (const e of entries) if (e.isDirectory) removeDirTree(`${path}/${e.name}`);
  try {
    Deno.removeSync(path);
  } catch {
    // Busy (a process is still in it) or already gone: leave it.
  }
}

/**
 * Removes the cgroup directory `rel` (e.g. "/<namespace>") from every
 * hierarchy, bottom up. Cgroups that still hold processes stay.
 */
export function removeCgroup(rel: string): void {
  const clean = rel.replace(/^\/+/, "");
  if (!clean) throw new Error("refusing to remove a cgroup root");
  for (const root of cgroupRoots()) removeDirTree(`${root}/${clean}`);
}

/** Removes `dir` if it exists and is empty; anything else is left alone. */
export function removeIfEmpty(dir: string): void {
  try {
    Deno.removeSync(dir);
  } catch {
    // Not empty, or gone: leave it.
  }
}
