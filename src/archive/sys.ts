// The few system operations Deno has no call for: device nodes and
// extended attributes. For now they run as commands (coreutils mknod; a
// python3 one-liner for the *xattr calls, batched so a layer costs one
// process); they move to ffi/ once it exports mknod and the xattr calls.

import { unimplemented } from "../errdefs/mod.ts";
import { runChecked } from "../spawn/mod.ts";

/** One extended attribute to set on a path (the link itself for symlinks). */
export interface XattrWrite {
  path: string;
  name: string;
  value: Uint8Array;
}

/** System operations the archive code needs beyond Deno's own. */
export interface ArchiveSys {
  /** Creates a device node or fifo at `path` with permission bits `mode`. */
  mknod(
    path: string,
    kind: "char" | "block" | "fifo",
    mode: number,
    major: number,
    minor: number,
  ): Promise<void>;
  /** Sets extended attributes without following symlinks. */
  setXattrs(writes: readonly XattrWrite[]): Promise<void>;
  /** Reads all extended attributes of each path (not following symlinks); paths without any are left out. */
  getXattrs(paths: readonly string[]): Promise<Map<string, Record<string, Uint8Array>>>;
}

function b64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

const SET_XATTRS = `
import base64, json, os, sys
for p, n, v in json.load(sys.stdin):
    os.setxattr(p, n, base64.b64decode(v), follow_symlinks=False)
`;

const GET_XATTRS = `
import base64, json, os, sys
out = {}
for p in json.load(sys.stdin):
    try:
        names = os.listxattr(p, follow_symlinks=False)
    except OSError:
        continue
    if names:
        out[p] = {n: base64.b64encode(os.getxattr(p, n, follow_symlinks=False)).decode() for n in names}
json.dump(out, sys.stdout)
`;

let python: string | undefined;
async function pythonPath(): Promise<string> {
  if (python) return python;
  for (const p of ["/usr/bin/python3", "/usr/local/bin/python3"]) {
    try {
      await Deno.stat(p);
      return python = p;
    } catch {
      // try the next
    }
  }
  throw unimplemented("extended attributes need python3 until ffi/ provides setxattr/getxattr");
}

/** The command-backed {@link ArchiveSys}. */
export const commandSys: ArchiveSys = {
  async mknod(path, kind, mode, major, minor) {
    const mode8 = (mode & 0o7777).toString(8);
    const args = kind === "fifo"
      ? ["-m", mode8, path, "p"]
      : ["-m", mode8, path, kind === "char" ? "c" : "b", String(major), String(minor)];
    await runChecked("mknod", args);
  },
  async setXattrs(writes) {
    if (writes.length === 0) return;
    const input = new TextEncoder().encode(
      JSON.stringify(writes.map((w) => [w.path, w.name, b64(w.value)])),
    );
    await runChecked(await pythonPath(), ["-c", SET_XATTRS], { input });
  },
  async getXattrs(paths) {
    const out = new Map<string, Record<string, Uint8Array>>();
    if (paths.length === 0) return out;
    const input = new TextEncoder().encode(JSON.stringify(paths));
    const r = await runChecked(await pythonPath(), ["-c", GET_XATTRS], { input });
    const raw = JSON.parse(new TextDecoder().decode(r.stdout)) as Record<
      string,
      Record<string, string>
    >;
    for (const [p, attrs] of Object.entries(raw)) {
      const m: Record<string, Uint8Array> = {};
      for (const [n, v] of Object.entries(attrs)) {
        m[n] = Uint8Array.from(atob(v), (c) => c.charCodeAt(0));
      }
      out.set(p, m);
    }
    return out;
  },
};
