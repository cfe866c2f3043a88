/**
 * Producing a layer: the changes between two directories, or an overlay
 * upper directory with its whiteouts turned back into OCI ones.
 *
 * @module
 */

import { devMajor, devMinor, lgetxattr } from "../../ffi/mod.ts";
import { OVERLAY_OPAQUE_XATTR, WHITEOUT_OPAQUE, WHITEOUT_PREFIX } from "./apply.ts";
import { readXattrs } from "./sys.ts";
import { packTar, type TarHeader, type TarOut, xattrRecords } from "./tar.ts";

/** Options of {@link diffTar}. */
export interface DiffOptions {
  /** The new state. */
  upper: string;
  /**
   * The old state, compared with `upper` (for native snapshots). Without
   * it, `upper` must be an overlay upper directory whose overlayfs
   * whiteouts and opaque markers are converted to OCI ones.
   */
  lower?: string;
  /** Modification times later than this are written as this. */
  clampMtime?: Date;
}

interface Change {
  /** Root-relative path in the archive. */
  rel: string;
  /** Host path to read from (undefined for whiteouts). */
  host?: string;
  info?: Deno.FileInfo;
  /** This entry is a whiteout of `rel`'s last component. */
  whiteout?: boolean;
}

const EPOCH = new Date(0);

async function lstatOrUndefined(path: string): Promise<Deno.FileInfo | undefined> {
  try {
    return await Deno.lstat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

async function names(dir: string | undefined): Promise<string[]> {
  if (!dir) return [];
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(dir)) out.push(e.name);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) return [];
    throw err;
  }
  return out.sort();
}

function kind(i: Deno.FileInfo): string {
  if (i.isFile) return "file";
  if (i.isDirectory) return "dir";
  if (i.isSymlink) return "symlink";
  return `special:${(i.mode ?? 0) & 0o170000}`;
}

async function sameEntry(
  a: string,
  ai: Deno.FileInfo,
  b: string,
  bi: Deno.FileInfo,
): Promise<boolean> {
  if (kind(ai) !== kind(bi)) return false;
  if (ai.mode !== bi.mode || ai.uid !== bi.uid || ai.gid !== bi.gid || ai.rdev !== bi.rdev) {
    return false;
  }
  if (ai.isDirectory) return true; // children are compared on their own
  if (ai.size !== bi.size || ai.mtime?.getTime() !== bi.mtime?.getTime()) return false;
  if (ai.isSymlink) return await Deno.readLink(a) === await Deno.readLink(b);
  return true;
}

function isOverlayWhiteout(i: Deno.FileInfo): boolean {
  return !!i.isCharDevice && i.rdev === 0;
}

/** Changes from `lower` to `upper`, parents before children, in name order. */
async function compareDirs(
  lower: string,
  upper: string,
  rel: string,
  out: Change[],
): Promise<void> {
  const l = `${lower}${rel ? `/${rel}` : ""}`;
  const u = `${upper}${rel ? `/${rel}` : ""}`;
  const all = [...new Set([...await names(l), ...await names(u)])].sort();
  for (const name of all) {
    const r = rel ? `${rel}/${name}` : name;
    const li = await lstatOrUndefined(`${lower}/${r}`);
    const ui = await lstatOrUndefined(`${upper}/${r}`);
    if (!ui) {
      out.push({ rel: r, whiteout: true });
      continue;
    }
    if (!li || !await sameEntry(`${lower}/${r}`, li, `${upper}/${r}`, ui)) {
      out.push({ rel: r, host: `${upper}/${r}`, info: ui });
      if (ui.isDirectory) {
        if (li?.isDirectory) await compareDirs(lower, upper, r, out);
        else await walkAll(upper, r, out);
      }
      continue;
    }
    if (ui.isDirectory) {
      const before = out.length;
      await compareDirs(lower, upper, r, out);
      // A changed child needs its directory in the archive too.
      if (out.length > before) out.splice(before, 0, { rel: r, host: `${upper}/${r}`, info: ui });
    }
  }
}

async function walkAll(upper: string, rel: string, out: Change[]): Promise<void> {
  for (const name of await names(`${upper}/${rel}`)) {
    const r = `${rel}/${name}`;
    const info = await Deno.lstat(`${upper}/${r}`);
    out.push({ rel: r, host: `${upper}/${r}`, info });
    if (info.isDirectory) await walkAll(upper, r, out);
  }
}

/** True when overlayfs treats directory `host` as opaque. */
function isOpaque(host: string): boolean {
  const v = lgetxattr(host, OVERLAY_OPAQUE_XATTR);
  return v?.length === 1 && v[0] === 0x79; // "y"
}

/** An overlay upper dir as changes: its whiteouts become OCI whiteouts. */
async function overlayChanges(upper: string, rel: string, out: Change[]) {
  for (const name of await names(rel ? `${upper}/${rel}` : upper)) {
    const r = rel ? `${rel}/${name}` : name;
    const host = `${upper}/${r}`;
    const info = await Deno.lstat(host);
    if (isOverlayWhiteout(info)) {
      out.push({ rel: r, whiteout: true });
      continue;
    }
    out.push({ rel: r, host, info });
    if (info.isDirectory) {
      if (isOpaque(host)) out.push({ rel: `${r}/${WHITEOUT_OPAQUE}`, whiteout: false });
      await overlayChanges(upper, r, out);
    }
  }
}

function clamp(t: Date, max: Date | undefined): Date {
  return max && t.getTime() > max.getTime() ? max : t;
}

function whiteoutHeader(name: string): TarHeader {
  return { name, type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: EPOCH };
}

async function* fileData(path: string): AsyncGenerator<Uint8Array> {
  const f = await Deno.open(path, { read: true });
  try {
    const buf = new Uint8Array(1 << 20);
    for (;;) {
      const n = await f.read(buf);
      if (n === null) break;
      yield buf.slice(0, n);
    }
  } finally {
    f.close();
  }
}

/**
 * The differences from `lower` to `upper` (or of an overlay upper
 * directory) as an uncompressed OCI layer tar, produced as it is read.
 * Only metadata of changed entries is gathered up front; file contents
 * stream from disk. Compress with `.pipeThrough(new CompressionStream("gzip"))`.
 */
export function diffTar(opts: DiffOptions): ReadableStream<Uint8Array> {
  async function* entries(): AsyncGenerator<TarOut> {
    const changes: Change[] = [];
    if (opts.lower !== undefined) {
      await compareDirs(opts.lower, opts.upper, "", changes);
    } else {
      await overlayChanges(opts.upper, "", changes);
    }
    const firstLink = new Map<string, string>();
    for (const c of changes) {
      if (c.whiteout) {
        const slash = c.rel.lastIndexOf("/");
        const dir = slash >= 0 ? c.rel.slice(0, slash + 1) : "";
        yield { header: whiteoutHeader(`${dir}${WHITEOUT_PREFIX}${c.rel.slice(slash + 1)}`) };
        continue;
      }
      if (!c.host) {
        yield { header: whiteoutHeader(c.rel) }; // the opaque marker
        continue;
      }
      const i = c.info!;
      // overlayfs' own attributes describe the upper dir, not the files.
      const own = Object.fromEntries(
        Object.entries(readXattrs(c.host)).filter(([n]) => !n.startsWith("trusted.overlay.")),
      );
      const base: TarHeader = {
        name: c.rel,
        type: "file",
        mode: (i.mode ?? 0) & 0o7777,
        uid: i.uid ?? 0,
        gid: i.gid ?? 0,
        size: 0,
        mtime: clamp(i.mtime ?? EPOCH, opts.clampMtime),
        pax: Object.keys(own).length > 0 ? xattrRecords(own) : null,
      };
      if (i.isDirectory) {
        yield { header: { ...base, type: "directory" } };
      } else if (i.isSymlink) {
        yield { header: { ...base, type: "symlink", linkname: await Deno.readLink(c.host) } };
      } else if (i.isFile) {
        const key = `${i.dev}:${i.ino}`;
        const first = (i.nlink ?? 1) > 1 ? firstLink.get(key) : undefined;
        if (first) {
          yield { header: { ...base, type: "link", linkname: first } };
          continue;
        }
        if ((i.nlink ?? 1) > 1) firstLink.set(key, c.rel);
        yield { header: { ...base, size: i.size }, data: fileData(c.host) };
      } else if (i.isCharDevice || i.isBlockDevice || i.isFifo) {
        const rdev = i.rdev ?? 0;
        const type = i.isFifo ? "fifo" : i.isCharDevice ? "character-device" : "block-device";
        yield { header: { ...base, type, devmajor: devMajor(rdev), devminor: devMinor(rdev) } };
      }
      // Sockets cannot be archived; they are left out, as tar does.
    }
  }
  return packTar(entries());
}
