/**
 * Paths of tar entries, confined to the directory a layer is applied to.
 *
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/**
 * Normalises a tar entry name to root-relative components: leading `/`
 * and `./`, empty and `.` parts go, `..` pops. An entry that would climb
 * above the root is InvalidArgument.
 */
export function cleanEntryPath(name: string): string[] {
  const out: string[] = [];
  for (const part of name.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) {
        throw invalidArgument(`tar entry ${JSON.stringify(name)} points outside the root`);
      }
      out.pop();
      continue;
    }
    out.push(part);
  }
  return out;
}

const MAX_SYMLINKS = 255;

/**
 * The host path of root-relative `parts`, following symbolic links the
 * way they would resolve if `root` were `/`: absolute targets restart at
 * `root` and `..` never climbs above it. The last component is followed
 * too unless `followLast` is false (for the path an entry is created at).
 */
export async function resolveInRoot(
  root: string,
  parts: readonly string[],
  followLast = true,
): Promise<string> {
  const todo = [...parts];
  const done: string[] = [];
  let links = 0;
  while (todo.length > 0) {
    const part = todo.shift()!;
    if (part === "" || part === ".") continue;
    if (part === "..") {
      done.pop();
      continue;
    }
    const isLast = todo.length === 0;
    const host = `${root}/${[...done, part].join("/")}`;
    let info: Deno.FileInfo | undefined;
    try {
      info = await Deno.lstat(host);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    if (info?.isSymlink && (!isLast || followLast)) {
      if (++links > MAX_SYMLINKS) {
        throw invalidArgument(`too many symbolic links resolving ${parts.join("/")}`);
      }
      const target = await Deno.readLink(host);
      if (target.startsWith("/")) done.length = 0;
      todo.unshift(...target.split("/"));
      continue;
    }
    done.push(part);
  }
  return done.length === 0 ? root : `${root}/${done.join("/")}`;
}
