/**
 * Network namespaces for pods, pinned as files so they outlive every
 * process in them: a new namespace's `/proc/<pid>/ns/net` is bind-mounted
 * onto an empty file under a directory the caller chooses (containerd pins
 * under `<state>/netns/cni-<random>`).
 *
 * Deno's main thread must never call unshare(2): the whole process would
 * move. A short-lived helper does it instead: util-linux
 * `unshare --net=FILE true` unshares in its own process and pins the new
 * namespace from a forked child that stays in berth's mount namespace, so
 * the pin is visible where berth (and runc, and CNI plugins) look. Like
 * containerd, nothing changes the propagation of the pin's directory: the
 * bind mount follows that mount's own rules (on a shared mount it shows in
 * peers, and its lazy unmount is propagated to them and to slaves).
 *
 * @example
 * ```ts
 * import { createNetns, netnsExists, removeNetns } from "./mod.ts";
 * const path = await createNetns("/var/run/berth/netns");
 * await netnsExists(path); // true
 * await removeNetns(path); // unmount + delete; a second call is a no-op
 * ```
 * @module
 */

import { isErrno, umount2, Unmount } from "../../ffi/mod.ts";
import { BerthError, Code, internal } from "../errdefs/mod.ts";
import { run } from "../spawn/mod.ts";

/** The util-linux program that makes and pins a namespace (see the module doc). */
const UNSHARE = "unshare";

/** A name like containerd's: `cni-` and 16 random bytes in 8-4-4-4-12 hex groups. */
function randomName(): string {
  const b = crypto.getRandomValues(new Uint8Array(16));
  const hex = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `cni-${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${
    hex.slice(20)
  }`;
}

/**
 * Creates a new network namespace pinned at `<dir>/cni-<random>` and returns
 * that path. `dir` is created (0755) when missing. Nothing is left behind on
 * failure.
 */
export async function createNetns(dir: string): Promise<string> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
  const path = `${dir.replace(/\/+$/, "")}/${randomName()}`;
  // createNew: the pin must be a file nobody else owns.
  const f = await Deno.open(path, { write: true, createNew: true, mode: 0o644 });
  f.close();
  try {
    const r = await run(UNSHARE, [`--net=${path}`, "true"]);
    if (!r.success) {
      const why = new TextDecoder().decode(r.stderr).trim() || `exit status ${r.code}`;
      throw new BerthError(Code.Internal, `failed to create network namespace ${path}: ${why}`);
    }
    if (!await netnsExists(path)) {
      throw internal(`failed to create network namespace ${path}: ${UNSHARE} left no pin`);
    }
  } catch (err) {
    await unmountAndRemove(path).catch(() => {});
    throw err;
  }
  return path;
}

/**
 * True when `path` is a pinned namespace: its inode lives on nsfs, the
 * kernel's namespace filesystem (the device `/proc/self/ns/net` has). A
 * missing file, or a plain file whose pin was unmounted, is false.
 */
export async function netnsExists(path: string): Promise<boolean> {
  let st: Deno.FileInfo;
  try {
    st = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
  const self = await Deno.stat("/proc/self/ns/net");
  return st.dev === self.dev;
}

/**
 * Unmounts the pin at `path` (lazily, as containerd does, so a process that
 * still holds the mount cannot make removal fail) and deletes the file. A
 * path that is gone or not mounted is not an error: removal is idempotent.
 */
export async function removeNetns(path: string): Promise<void> {
  await unmountAndRemove(path);
}

async function unmountAndRemove(path: string): Promise<void> {
  try {
    umount2(path, Unmount.DETACH | Unmount.NOFOLLOW);
  } catch (err) {
    // EINVAL: not a mount point (never pinned, or unmounted already).
    if (!isErrno(err, "EINVAL") && !isErrno(err, "ENOENT")) {
      throw new BerthError(Code.Internal, `failed to unmount network namespace ${path}`, {
        cause: err,
      });
    }
  }
  try {
    await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
