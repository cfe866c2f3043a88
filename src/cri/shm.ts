/**
 * A pod's /dev/shm: a tmpfs mounted on the host under the sandbox's state
 * directory, bind-mounted into the sandbox and each of its containers, so
 * that containers sharing the pod's IPC namespace share its memory too.
 * @module
 */

import { isErrno, Mount, mount, umount2, Unmount } from "../../ffi/mod.ts";

/** Mounts the pod's shm tmpfs (64 MiB, as containerd's default) on `path`. */
export function mountShm(path: string): Promise<void> {
  mount(
    "shm",
    path,
    "tmpfs",
    Mount.NOSUID | Mount.NODEV | Mount.NOEXEC,
    "mode=1777,size=65536k",
  );
  return Promise.resolve();
}

/** Unmounts it; not mounted (or gone) is fine. */
export function unmountShm(path: string): Promise<void> {
  try {
    umount2(path, Unmount.DETACH);
  } catch (err) {
    if (!isErrno(err, "EINVAL") && !isErrno(err, "ENOENT")) throw err;
  }
  return Promise.resolve();
}
