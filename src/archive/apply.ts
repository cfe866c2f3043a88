/**
 * Unpacking a layer into a directory, as containerd's archive.Apply does.
 *
 * @module
 */

import { DigestingStream } from "../content/mod.ts";
import { BerthError, Code, invalidArgument, toBerthError } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { decompress } from "./compression.ts";
import { cleanEntryPath, resolveInRoot } from "./path.ts";
import { lsetxattr } from "../../ffi/mod.ts";
import { makeNode, setLayerXattr } from "./sys.ts";
import { mtimeOf, readTar, type TarEntry, type TarHeader, xattrsOf } from "./tar.ts";

// Loaded on first use: a static node: import is evaluated at every start of
// the bundle, whatever the mode, and this one costs tens of ms and ~4 MB.
let nodeFs: typeof import("node:fs") | undefined;
const fs = () => nodeFs ??= process.getBuiltinModule("node:fs") as typeof import("node:fs");

/** OCI whiteout prefix: `.wh.<name>` deletes `<name>` from the layers below. */
export const WHITEOUT_PREFIX = ".wh.";
/** OCI opaque marker: hides everything below from the directory it is in. */
export const WHITEOUT_OPAQUE = ".wh..wh..opq";
/** The xattr overlayfs reads to treat a directory as opaque. */
export const OVERLAY_OPAQUE_XATTR = "trusted.overlay.opaque";
const OPAQUE_VALUE = new TextEncoder().encode("y");

/** Options of {@link applyLayer}. */
export interface ApplyOptions {
  /**
   * How OCI whiteouts are applied: "overlay" writes overlayfs whiteouts
   * (0/0 character devices and the opaque xattr) for an overlay snapshot's
   * upper directory; "delete" (default) really deletes, for native snapshots.
   */
  whiteouts?: "overlay" | "delete";
  /** The layer's media type, for error messages. */
  mediaType?: string;
}

/** What {@link applyLayer} read. */
export interface ApplyResult {
  /** Digest of the uncompressed stream: the layer's diff id. */
  digest: string;
  /** Size of the uncompressed stream. */
  size: number;
}

function lstatOrUndefined(path: string): Deno.FileInfo | undefined {
  try {
    return Deno.lstatSync(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

async function writeAll(f: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let n = 0;
  while (n < chunk.length) n += await f.write(chunk.subarray(n));
}

function numberFromPax(h: TarHeader, key: string, fallback: number): number {
  const v = h.pax?.[key];
  return v && /^\d+$/.test(v) ? Number(v) : fallback;
}

/**
 * Applies the layer tar `layer` (uncompressed, gzip or zstd) to `root`.
 * Entries may not leave `root`, neither by `..` nor through symlinks in
 * the tree (which resolve as if `root` were `/`). Owners, modes, times,
 * xattrs, hard links, symlinks and devices are kept. The stream is
 * processed as it arrives; returns the diff id and uncompressed size.
 */
export async function applyLayer(
  root: string,
  layer: ReadableStream<Uint8Array>,
  opts: ApplyOptions = {},
): Promise<ApplyResult> {
  const at: Position = {};
  try {
    return await applyEntries(root, layer, opts, at);
  } catch (err) {
    throw layerError(err, at);
  }
}

// Where in the layer an error happened: inside an entry, or between entries
// (a header that did not parse, a stream that did not inflate).
interface Position {
  entry?: string;
  after?: string;
}

/**
 * Every failure of a layer as a BerthError that names the entry. The tar
 * reader and the decompressors throw plain Errors for a malformed stream:
 * that is bad input (InvalidArgument); file-system errors keep their code
 * (ENOSPC is ResourceExhausted).
 */
function layerError(err: unknown, at: Position): BerthError {
  const e = toBerthError(err);
  const code = e.code === Code.Unknown ? Code.InvalidArgument : e.code;
  const where = at.entry !== undefined
    ? `layer entry ${JSON.stringify(at.entry)}`
    : at.after !== undefined
    ? `layer, after entry ${JSON.stringify(at.after)}`
    : "layer, before its first entry";
  return new BerthError(code, `${where}: ${e.message}`, { cause: err });
}

/** Passes entries on, keeping `at` on the one being applied. */
async function* tracked(entries: AsyncIterable<TarEntry>, at: Position): AsyncGenerator<TarEntry> {
  for await (const e of entries) {
    at.entry = e.header.name;
    yield e;
    at.after = e.header.name;
    at.entry = undefined;
  }
}

async function applyEntries(
  root: string,
  layer: ReadableStream<Uint8Array>,
  opts: ApplyOptions,
  at: Position,
): Promise<ApplyResult> {
  const overlay = opts.whiteouts === "overlay";
  const { stream } = await decompress(layer, opts.mediaType);

  const digesting = new DigestingStream();
  const hashed = stream.pipeThrough(digesting);

  // Names this layer created, by directory: without overlayfs, an opaque
  // marker removes only what was below. Names, not whole paths, as a layer
  // of a million files would otherwise hold a million paths until its end;
  // overlayfs marks opaque directories itself, so then nothing is kept.
  const unpacked = new Map<string, Set<string>>();
  const dirTimes: { path: string; atime: Date; mtime: Date }[] = [];
  // Parent directories resolved (and made) already, by entry path: most
  // entries share a few parents. Anything removed may have been one of
  // them, or a symlink on the way to one, so a removal forgets them all.
  const parents = new Map<string, string>();
  const remove = (path: string) => {
    Deno.removeSync(path, { recursive: true });
    parents.clear();
  };

  // Metadata calls are synchronous: each is one short syscall, and an
  // async op's round trip through Deno's thread pool costs more than the
  // call itself (a layer of many small files is made of little else).
  for await (const { header: h, data } of tracked(readTar(hashed), at)) {
    const parts = cleanEntryPath(h.name);
    if (parts.length === 0) continue; // the root itself keeps the snapshot's own attributes
    const base = parts[parts.length - 1];
    const parentKey = parts.slice(0, -1).join("/");
    let parentPath = parents.get(parentKey);
    if (parentPath === undefined) {
      parentPath = await resolveInRoot(root, parts.slice(0, -1));
      Deno.mkdirSync(parentPath, { recursive: true, mode: 0o755 });
      parents.set(parentKey, parentPath);
    }

    if (base.startsWith(WHITEOUT_PREFIX)) {
      applyWhiteout(parentPath, base, h, overlay, unpacked, remove);
      continue;
    }

    const path = `${parentPath}/${base}`;
    const existing = lstatOrUndefined(path);
    if (existing && !(existing.isDirectory && h.type === "directory")) remove(path);

    const uid = numberFromPax(h, "uid", h.uid);
    const gid = numberFromPax(h, "gid", h.gid);
    const mode = h.mode & 0o7777;
    switch (h.type) {
      case "directory":
        if (!existing?.isDirectory) Deno.mkdirSync(path, { mode: 0o700 });
        break;
      case "file":
      case "contiguous-file": {
        const f = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
        // One write in flight on Deno's I/O thread while the next chunk is
        // inflated, hashed and parsed (chunks are never reused once passed on).
        let writing: Promise<void> | undefined;
        try {
          for await (const chunk of data) {
            await writing;
            writing = writeAll(f, chunk);
          }
          await writing;
        } finally {
          await writing?.catch(() => {}); // the error, if any, was thrown above
          f.close();
        }
        break;
      }
      case "link": {
        const linkParts = cleanEntryPath(h.linkname ?? "");
        if (linkParts.length === 0) throw invalidArgument(`hard link ${h.name} has no target`);
        const target = await resolveInRoot(root, linkParts, false);
        Deno.linkSync(target, path);
        break;
      }
      case "symlink":
        Deno.symlinkSync(h.linkname ?? "", path);
        break;
      case "character-device":
      case "block-device":
      case "fifo":
        makeNode(
          path,
          h.type === "fifo" ? "fifo" : h.type === "character-device" ? "char" : "block",
          mode,
          h.devmajor ?? 0,
          h.devminor ?? 0,
        );
        break;
      default:
        log.warn("skipping tar entry of unsupported type", { name: h.name, type: h.type });
        continue;
    }
    if (!overlay) {
      let names = unpacked.get(parentPath);
      if (names === undefined) unpacked.set(parentPath, names = new Set());
      names.add(base);
    }
    // A hard link is its target's inode: owner, mode and times are the target's.
    if (h.type === "link") continue;

    // Owner first: chown clears set-id bits and file capabilities, so the
    // mode and then the xattrs go on after it.
    fs().lchownSync(path, uid, gid);
    if (h.type !== "symlink") Deno.chmodSync(path, mode);
    const fileOrDir = h.type === "directory" || h.type === "file" || h.type === "contiguous-file";
    if (h.pax) {
      for (const [name, value] of Object.entries(xattrsOf(h))) {
        setLayerXattr(path, name, value, fileOrDir);
      }
    }
    const mtime = mtimeOf(h);
    const atimeText = h.pax?.atime;
    const atime = atimeText && /^\d+(\.\d+)?$/.test(atimeText)
      ? new Date(Number(atimeText) * 1000)
      : mtime;
    // Directory times are set last: creating their children changes them.
    if (h.type === "directory") dirTimes.push({ path, atime, mtime });
    else fs().lutimesSync(path, atime, mtime);
  }

  for (const d of dirTimes.reverse()) Deno.utimeSync(d.path, d.atime, d.mtime);
  return { digest: digesting.digest(), size: digesting.size };
}

function applyWhiteout(
  parentPath: string,
  base: string,
  h: TarHeader,
  overlay: boolean,
  unpacked: Map<string, Set<string>>,
  remove: (path: string) => void,
): void {
  if (base === WHITEOUT_OPAQUE) {
    if (overlay) {
      lsetxattr(parentPath, OVERLAY_OPAQUE_XATTR, OPAQUE_VALUE);
      return;
    }
    const mine = unpacked.get(parentPath);
    for (const e of Deno.readDirSync(parentPath)) {
      if (!mine?.has(e.name)) remove(`${parentPath}/${e.name}`);
    }
    return;
  }
  const name = base.slice(WHITEOUT_PREFIX.length);
  if (!name || name === "." || name === "..") {
    throw invalidArgument(`invalid whiteout entry ${JSON.stringify(h.name)}`);
  }
  const target = `${parentPath}/${name}`;
  if (lstatOrUndefined(target)) remove(target);
  if (overlay) {
    // overlayfs hides a lower file behind a 0/0 character device of the same name.
    makeNode(target, "char", 0, 0, 0);
    fs().lchownSync(target, numberFromPax(h, "uid", h.uid), numberFromPax(h, "gid", h.gid));
  }
}
