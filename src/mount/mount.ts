/**
 * Mounting a container's root filesystem from the mounts containerd sends
 * (overlay from the snapshotter, or bind), and taking it down again.
 * Option parsing follows mount(8): known words become MS_* flags, the rest
 * is filesystem data.
 * @module
 */

import { Mount, mount, umount2 } from "../../ffi/mod.ts";
import { BerthError, Code } from "../errdefs/mod.ts";

/** One mount as containerd describes it (containerd.types.Mount). */
export interface MountSpec {
  type: string;
  source: string;
  options: string[];
}

/** The MS_* flag values live in ffi, beside mount(2) itself. */
const MS = Mount;

/** Option words that set (or, with `clear`, unset) a flag. */
const FLAG_WORDS: Record<string, { clear: boolean; flag: number }> = {
  async: { clear: true, flag: MS.SYNCHRONOUS },
  atime: { clear: true, flag: MS.NOATIME },
  bind: { clear: false, flag: MS.BIND },
  defaults: { clear: false, flag: 0 },
  dev: { clear: true, flag: MS.NODEV },
  diratime: { clear: true, flag: MS.NODIRATIME },
  dirsync: { clear: false, flag: MS.DIRSYNC },
  exec: { clear: true, flag: MS.NOEXEC },
  mand: { clear: false, flag: MS.MANDLOCK },
  noatime: { clear: false, flag: MS.NOATIME },
  nodev: { clear: false, flag: MS.NODEV },
  nodiratime: { clear: false, flag: MS.NODIRATIME },
  noexec: { clear: false, flag: MS.NOEXEC },
  nomand: { clear: true, flag: MS.MANDLOCK },
  norelatime: { clear: true, flag: MS.RELATIME },
  nostrictatime: { clear: true, flag: MS.STRICTATIME },
  nosuid: { clear: false, flag: MS.NOSUID },
  rbind: { clear: false, flag: MS.BIND | MS.REC },
  relatime: { clear: false, flag: MS.RELATIME },
  remount: { clear: false, flag: MS.REMOUNT },
  ro: { clear: false, flag: MS.RDONLY },
  rw: { clear: true, flag: MS.RDONLY },
  strictatime: { clear: false, flag: MS.STRICTATIME },
  suid: { clear: true, flag: MS.NOSUID },
  sync: { clear: false, flag: MS.SYNCHRONOUS },
  private: { clear: false, flag: MS.PRIVATE },
  rprivate: { clear: false, flag: MS.PRIVATE | MS.REC },
  slave: { clear: false, flag: MS.SLAVE },
  rslave: { clear: false, flag: MS.SLAVE | MS.REC },
  shared: { clear: false, flag: MS.SHARED },
  rshared: { clear: false, flag: MS.SHARED | MS.REC },
  unbindable: { clear: false, flag: MS.UNBINDABLE },
  runbindable: { clear: false, flag: MS.UNBINDABLE | MS.REC },
};

/** Splits mount options into MS_* flags and the filesystem's data string. */
export function parseMountOptions(options: string[]): { flags: number; data: string } {
  let flags = 0;
  const data: string[] = [];
  for (const o of options) {
    const w = FLAG_WORDS[o];
    if (w && w.flag !== 0) flags = w.clear ? flags & ~w.flag : flags | w.flag;
    else if (!w) data.push(o);
  }
  return { flags, data: data.join(",") };
}

const PAGE = 4096;
const PROPAGATION = MS.SHARED | MS.PRIVATE | MS.SLAVE | MS.UNBINDABLE;

/**
 * When overlay's lowerdir list is too long for one page, mount from the
 * layers' common parent with relative names (as containerd does).
 */
function compactLowerdirs(options: string[]): { chdir: string; options: string[] } {
  const idx = options.findIndex((o) => o.startsWith("lowerdir="));
  if (idx < 0) return { chdir: "", options };
  const dirs = options[idx].slice("lowerdir=".length).split(":");
  if (dirs.length < 2) return { chdir: "", options };
  let prefix = dirs[0];
  for (const d of dirs) while (!d.startsWith(prefix)) prefix = prefix.slice(0, -1);
  const common = prefix.slice(0, prefix.lastIndexOf("/"));
  if (common === "" || common === "/") return { chdir: "", options };
  const rest = options.filter((_, i) => i !== idx);
  rest.push("lowerdir=" + dirs.map((d) => d.slice(common.length + 1)).join(":"));
  return { chdir: common, options: rest };
}

/** Mounts `m` on `target`. */
export function mountOne(m: MountSpec, target: string): void {
  let options = m.options;
  let chdir = "";
  if (m.type === "overlay" && options.join("").length >= PAGE - 512) {
    ({ chdir, options } = compactLowerdirs(options));
  }
  const { flags, data } = parseMountOptions(options);
  if (data.length > PAGE) {
    throw new BerthError(Code.InvalidArgument, `mount options of ${m.source} are too long`);
  }
  const plain = flags & ~PROPAGATION;
  const describe = `mount ${m.type} ${m.source} on ${target}`;
  try {
    if ((flags & MS.REMOUNT) === 0 || data !== "") {
      if (chdir) {
        // Relative lowerdirs resolve against the cwd at the time of the call;
        // nothing else runs between these synchronous calls.
        const back = Deno.cwd();
        Deno.chdir(chdir);
        try {
          mount(m.source, target, m.type, plain, data);
        } finally {
          Deno.chdir(back);
        }
      } else {
        mount(m.source, target, m.type, plain, data);
      }
    }
    if (flags & PROPAGATION) mount("", target, "", flags & (PROPAGATION | MS.REC | MS.SILENT), "");
    if ((plain & (MS.BIND | MS.RDONLY)) === (MS.BIND | MS.RDONLY)) {
      mount("", target, "", plain | MS.REMOUNT, "");
    }
  } catch (err) {
    throw new BerthError(Code.Internal, `${describe}: ${(err as Error).message}`, { cause: err });
  }
}

/** Mounts every component of a rootfs on `target`, undoing them all if one fails. */
export async function mountAll(mounts: MountSpec[], target: string): Promise<void> {
  try {
    for (const m of mounts) mountOne(m, target);
  } catch (err) {
    await unmountAll(target).catch(() => {}); // the original error says more
    throw err;
  }
}

function errnoName(err: unknown): string {
  const e = err as { code?: string; errno?: number; message?: string };
  return e.code ?? e.message ?? String(err);
}

/**
 * Unmounts everything stacked on `target` until nothing is mounted there
 * (EINVAL: not a mount point); EBUSY is retried a few times.
 */
export async function unmountAll(target: string): Promise<void> {
  try {
    Deno.statSync(target);
  } catch {
    return;
  }
  let busy = 0;
  for (;;) {
    try {
      umount2(target, 0); // one layer off; go on until EINVAL says none is left
    } catch (err) {
      const name = errnoName(err);
      if (name.includes("EINVAL")) return;
      if (!name.includes("EBUSY") || busy++ >= 50) {
        throw new BerthError(Code.Internal, `unmount ${target}: ${name}`, { cause: err });
      }
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
