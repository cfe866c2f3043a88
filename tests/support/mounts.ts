/**
 * Undoing what container runs leave on the host: mounts under a temporary
 * directory, and the per-namespace cgroup and runc state directories that
 * runc creates outside it. Only paths derived from the caller's own unique
 * names are touched.
 * @module
 */

import { run } from "../../src/spawn/mod.ts";

const MNT_DETACH = 2;

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

type Umount2 = (target: string, flags: number) => unknown;

let ffiUmount: Umount2 | null | undefined;

// ffi/ is written by another part of the project; use its umount2 when it is
// there, else fall back to umount(8). The specifier is computed so that
// type-checking does not require the file to exist yet.
async function loadFfiUmount(): Promise<Umount2 | null> {
  if (ffiUmount !== undefined) return ffiUmount;
  ffiUmount = null;
  try {
    const spec = new URL("../../ffi/mod.ts", import.meta.url).href;
    const mod = await import(spec);
    if (typeof mod.umount2 === "function") ffiUmount = mod.umount2 as Umount2;
  } catch {
    // No ffi module (yet): umount(8) it is.
  }
  return ffiUmount;
}

/** Lazily unmounts `target` (MNT_DETACH). Throws when it is still mounted afterwards. */
export async function unmountLazy(target: string): Promise<void> {
  const umount2 = await loadFfiUmount();
  if (umount2) {
    try {
      const r = umount2(target, MNT_DETACH);
      if (typeof r !== "number" || r === 0) return;
    } catch {
      // Fall through to umount(8), which reports its own error.
    }
  }
  const r = await run("umount", ["-l", target]);
  if (!r.success && mountsUnder(target).includes(target)) {
    throw new Error(`umount -l ${target}: ${new TextDecoder().decode(r.stderr).trim()}`);
  }
}

/** Unmounts everything mounted at or under `dir`, deepest first. */
export async function unmountAllUnder(dir: string): Promise<void> {
  // A lazy unmount of a parent can take children with it; re-read each pass.
  for (let pass = 0; pass < 5; pass++) {
    const points = mountsUnder(dir);
    if (points.length === 0) return;
    for (const p of points) await unmountLazy(p).catch(() => {});
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
