/**
 * Disk usage of a directory tree, counted the way containerd does:
 * allocated blocks of each distinct inode, and the number of inodes.
 *
 * @module
 */

import type { Usage } from "./types.ts";

/** Allocated bytes and distinct inodes under `root` (hard links count once). */
export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const visit = async (path: string) => {
    const st = await Deno.lstat(path);
    const key = `${st.dev}:${st.ino}`;
    if (!seen.has(key)) {
      seen.add(key);
      size += (st.blocks ?? 0) * 512;
    }
    if (st.isDirectory) {
      for await (const e of Deno.readDir(path)) await visit(`${path}/${e.name}`);
    }
  };
  await visit(root);
  return { size, inodes: seen.size };
}
