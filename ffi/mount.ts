/**
 * mount(2) and umount2(2), for the daemon's snapshot and rootfs mounts.
 *
 * @example
 * ```ts
 * import { Mount, mount, umount2, Unmount } from "./mount.ts";
 * mount("/var/lib/berth/snap/1/fs", "/run/berth/rootfs", "", Mount.BIND | Mount.REC);
 * umount2("/run/berth/rootfs", Unmount.DETACH);
 * ```
 * @module
 */

import { check, cString, invalid, libc } from "./libc.ts";

/** Flags for {@link mount} (the MS_* values). */
export const Mount = {
  RDONLY: 0x1,
  NOSUID: 0x2,
  NODEV: 0x4,
  NOEXEC: 0x8,
  SYNCHRONOUS: 0x10,
  REMOUNT: 0x20,
  MANDLOCK: 0x40,
  DIRSYNC: 0x80,
  NOSYMFOLLOW: 0x100,
  NOATIME: 0x400,
  NODIRATIME: 0x800,
  BIND: 0x1000,
  MOVE: 0x2000,
  REC: 0x4000,
  SILENT: 0x8000,
  UNBINDABLE: 0x20000,
  PRIVATE: 0x40000,
  SLAVE: 0x80000,
  SHARED: 0x100000,
  RELATIME: 0x200000,
  STRICTATIME: 0x1000000,
  LAZYTIME: 0x2000000,
} as const;

/** Flags for {@link umount2} (MNT_* and UMOUNT_NOFOLLOW). */
export const Unmount = {
  FORCE: 0x1,
  DETACH: 0x2,
  EXPIRE: 0x4,
  NOFOLLOW: 0x8,
} as const;

/**
 * Mounts `source` on `target` as `fstype` with `flags` ({@link Mount}) and
 * filesystem `data` (e.g. overlay's "lowerdir=...,upperdir=...,workdir=...").
 * Empty `source`/`fstype`/`data` are passed as NULL, as a bind mount, a
 * remount or a propagation change expects.
 */
export function mount(
  source: string,
  target: string,
  fstype: string,
  flags: number,
  data = "",
): void {
  if (!Number.isInteger(flags) || flags < 0) throw invalid("mount", `bad flags ${flags}`);
  const opt = (s: string) => (s === "" ? null : cString(s, "mount"));
  check(
    libc().mount(opt(source), cString(target, "mount"), opt(fstype), BigInt(flags), opt(data)),
    "mount",
    `${source || "none"}, ${target}, ${fstype || "none"}, 0x${flags.toString(16)}`,
  );
}

/**
 * Unmounts `target` with `flags` ({@link Unmount}); DETACH leaves it to the
 * kernel to finish once the mount is no longer busy.
 */
export function umount2(target: string, flags = 0): void {
  check(libc().umount2(cString(target, "umount2"), flags), "umount2", `${target}, ${flags}`);
}
