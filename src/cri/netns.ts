/**
 * A pod's network namespace, pinned by a bind mount of its nsfs file so it
 * outlives every process in it: made by util-linux `unshare --net=<file>`
 * (through src/spawn, so no thread of the daemon ever changes namespace),
 * with loopback brought up inside by `nsenter ... ip link set lo up`.
 * @module
 */

import { isErrno, umount2, Unmount } from "../../ffi/mod.ts";
import { internal } from "../errdefs/mod.ts";
import { run } from "../spawn/mod.ts";

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await run(cmd, args);
  if (!r.success) {
    const why = new TextDecoder().decode(r.stderr).trim() || `exit status ${r.code}`;
    throw internal(`${cmd} ${args.join(" ")}: ${why}`);
  }
}

/** Makes a new network namespace pinned at `path` (its directory is created); loopback is up. */
export async function createNetns(path: string): Promise<void> {
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true, mode: 0o711 });
  await Deno.writeFile(path, new Uint8Array(), { createNew: true, mode: 0o444 });
  try {
    await must("unshare", [`--net=${path}`, "true"]);
    await must("nsenter", [`--net=${path}`, "ip", "link", "set", "lo", "up"]);
  } catch (err) {
    await removeNetns(path).catch(() => {});
    throw err;
  }
}

/** Unpins and removes the namespace at `path`; absent or never mounted is fine. */
export async function removeNetns(path: string): Promise<void> {
  try {
    umount2(path, Unmount.DETACH);
  } catch (err) {
    if (!isErrno(err, "EINVAL") && !isErrno(err, "ENOENT")) throw err;
  }
  await Deno.remove(path).catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
}
