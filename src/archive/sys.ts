/**
 * Device nodes and extended attributes for layers, over ffi's mknod and
 * l*xattr calls (Deno has neither). Everything here acts on a path itself,
 * never on a symlink's target.
 *
 * @module
 */

import {
  isErrno,
  lgetxattr,
  llistxattr,
  lsetxattr,
  makedev,
  mknod,
  NodeType,
} from "../../ffi/mod.ts";
import { log } from "../log/mod.ts";

const NODE_TYPES = { char: NodeType.CHAR, block: NodeType.BLOCK, fifo: NodeType.FIFO } as const;

/** Creates a device node or fifo at `path` with permission bits `mode` (less the umask). */
export function makeNode(
  path: string,
  kind: "char" | "block" | "fifo",
  mode: number,
  major = 0,
  minor = 0,
): void {
  mknod(path, NODE_TYPES[kind] | (mode & 0o7777), kind === "fifo" ? 0n : makedev(major, minor));
}

/**
 * Sets the extended attribute `name` of `path` from a layer. As containerd
 * does, one the filesystem cannot hold (EOPNOTSUPP), or a user.* one on
 * something the kernel allows none on (EPERM on a symlink or device), is
 * skipped with a warning rather than failing the layer.
 */
export function setLayerXattr(
  path: string,
  name: string,
  value: Uint8Array,
  isFileOrDir: boolean,
): void {
  try {
    lsetxattr(path, name, value);
  } catch (err) {
    const unsupported = isErrno(err, "EOPNOTSUPP");
    const userOnSpecial = isErrno(err, "EPERM") && name.startsWith("user.") && !isFileOrDir;
    if (!unsupported && !userOnSpecial) throw err;
    log.warn("ignored xattr in layer", { path, name, error: (err as Error).message });
  }
}

/**
 * All extended attributes of `path`; empty when it has none or its
 * filesystem has no xattrs at all.
 */
export function readXattrs(path: string): Record<string, Uint8Array> {
  let names: string[];
  try {
    names = llistxattr(path);
  } catch (err) {
    if (isErrno(err, "EOPNOTSUPP")) return {};
    throw err;
  }
  const out: Record<string, Uint8Array> = {};
  for (const name of names) {
    // Removed since the listing: simply not there.
    const value = lgetxattr(path, name);
    if (value) out[name] = value;
  }
  return out;
}
