/**
 * User names resolved inside the image, as containerd does for an image's
 * `User` and a security context's run_as_username: `/etc/passwd` and
 * `/etc/group` read from the container's root file system before it runs
 * (the snapshot's layers, top first, without mounting them).
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import type { Mount } from "../snapshots/mod.ts";

/** The directories of a root file system's mounts, the uppermost first. */
function layerDirs(mounts: Mount[]): string[] {
  const out: string[] = [];
  for (const m of mounts) {
    if (m.type === "overlay") {
      for (const o of m.options) {
        if (o.startsWith("upperdir=")) out.unshift(o.slice("upperdir=".length));
        if (o.startsWith("lowerdir=")) out.push(...o.slice("lowerdir=".length).split(":"));
      }
    } else if (m.type === "bind" || m.type === "rbind") {
      out.push(m.source);
    }
  }
  return out;
}

/** Text of `path` in the root file system of `mounts`, or undefined when no layer has it. */
export async function readRootfsFile(mounts: Mount[], path: string): Promise<string | undefined> {
  for (const dir of layerDirs(mounts)) {
    try {
      return await Deno.readTextFile(`${dir}/${path.replace(/^\/+/, "")}`);
    } catch { /* not in this layer */ }
  }
  return undefined;
}

/** A user resolved to ids. */
export interface ResolvedUser {
  uid: number;
  gid: number;
  /** Groups of /etc/group naming the user. */
  additionalGids: number[];
}

/**
 * Resolves `user` ("name", "uid", "name:group", "uid:gid") against the
 * image's passwd and group files; InvalidArgument for a name they lack.
 */
export function resolveUser(
  user: string,
  passwd: string | undefined,
  group: string | undefined,
): ResolvedUser {
  const [u, g] = user.split(":", 2);
  const users = (passwd ?? "").split("\n").map((l) => l.split(":")).filter((f) => f.length >= 4);
  const groups = (group ?? "").split("\n").map((l) => l.split(":")).filter((f) => f.length >= 3);
  let uid: number;
  let gid: number;
  let name: string | undefined;
  if (/^\d+$/.test(u)) {
    uid = Number(u);
    const entry = users.find((f) => Number(f[2]) === uid);
    name = entry?.[0];
    gid = entry ? Number(entry[3]) : 0;
  } else {
    const entry = users.find((f) => f[0] === u);
    if (entry === undefined) {
      throw invalidArgument(`no user ${JSON.stringify(u)} in the image's /etc/passwd`);
    }
    name = u;
    uid = Number(entry[2]);
    gid = Number(entry[3]);
  }
  if (g !== undefined) {
    if (/^\d+$/.test(g)) gid = Number(g);
    else {
      const entry = groups.find((f) => f[0] === g);
      if (entry === undefined) {
        throw invalidArgument(`no group ${JSON.stringify(g)} in the image's /etc/group`);
      }
      gid = Number(entry[2]);
    }
  }
  const additionalGids = name === undefined
    ? []
    : groups.filter((f) => (f[3] ?? "").split(",").includes(name!)).map((f) => Number(f[2]));
  return { uid, gid, additionalGids };
}
