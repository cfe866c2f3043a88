/**
 * A task's bundle, laid out as containerd's runtime v2 lays it out: the
 * state directory `<state>/<ns>/<id>` (config.json, rootfs/, the shim's log
 * fifo, its address file) and a work directory `<root>/<ns>/<id>` linked
 * from the bundle as `work`.
 *
 * @module
 */

import { isErrno, umount2, Unmount } from "../../ffi/mod.ts";
import { alreadyExists, invalidArgument } from "../errdefs/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";
import { log } from "../log/mod.ts";

/** A bundle on disk. */
export interface Bundle {
  id: string;
  namespace: string;
  /** `<state>/<ns>/<id>`: the shim's cwd and the OCI bundle. */
  path: string;
}

/** Where the bundle of `id` in `namespace` lives under the manager's `state`. */
export function bundleOf(state: string, namespace: string, id: string): Bundle {
  return { id, namespace, path: `${state}/${namespace}/${id}` };
}

async function mkdirMode(path: string, mode: number): Promise<void> {
  await Deno.mkdir(path, { mode });
  // The umask trims what mkdir asked for; the shim and runc rely on these bits.
  await Deno.chmod(path, mode);
}

/**
 * The host gid that the container's gid 0 maps to, when the spec remaps
 * users; the bundle must then be reachable by that group.
 */
function remappedGid(spec: Record<string, unknown>): number {
  const linux = spec.linux as
    | { gidMappings?: { containerID: number; hostID: number }[] }
    | undefined;
  for (const m of linux?.gidMappings ?? []) if (m.containerID === 0) return m.hostID;
  return 0;
}

/**
 * Makes the bundle of `id`: the state directory (0700, or 0710 to the
 * remapped group), `rootfs` (0711), a fresh work directory under `root`
 * (0711) linked as `work`, and config.json holding `specJson`. On failure
 * nothing of it is left.
 */
export async function createBundle(
  root: string,
  state: string,
  namespace: string,
  id: string,
  specJson: Uint8Array,
): Promise<Bundle> {
  validateIdentifier(id, "task id");
  let spec: Record<string, unknown>;
  try {
    spec = JSON.parse(new TextDecoder().decode(specJson));
  } catch (err) {
    throw invalidArgument(`task ${id}: the container's spec is not valid JSON: ${String(err)}`);
  }
  const b = bundleOf(state, namespace, id);
  const work = `${root}/${namespace}/${id}`;
  await Deno.mkdir(`${state}/${namespace}`, { recursive: true, mode: 0o711 });
  await Deno.mkdir(`${root}/${namespace}`, { recursive: true, mode: 0o711 });
  try {
    await mkdirMode(b.path, 0o700);
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw alreadyExists(`task ${id}: a bundle already exists at ${b.path}`);
    }
    throw err;
  }
  try {
    const gid = remappedGid(spec);
    if (gid !== 0) {
      await Deno.chown(b.path, null, gid);
      await Deno.chmod(b.path, 0o710);
    }
    await mkdirMode(`${b.path}/rootfs`, 0o711);
    // A work directory left by an earlier task of the same id is stale.
    await Deno.remove(work, { recursive: true }).catch(() => {});
    await mkdirMode(work, 0o711);
    await Deno.symlink(work, `${b.path}/work`);
    await Deno.writeFile(`${b.path}/config.json`, specJson, { mode: 0o666 });
  } catch (err) {
    // What failed is the error to report; a removal that fails too (no fd to
    // spare) is left to the caller's retry, not thrown in its place.
    await removeTree(b.path).catch(() => {});
    await removeTree(work).catch(() => {});
    throw err;
  }
  return b;
}

async function removeTree(path: string): Promise<void> {
  try {
    await Deno.remove(path, { recursive: true });
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** How many mounts stacked on one rootfs are taken off at most. */
const MAX_STACKED_MOUNTS = 64;

/**
 * Unmounts whatever is still mounted on the bundle's rootfs (a shim that
 * died before unmounting), lazily so a busy mount cannot keep it (a lazy
 * unmount takes the mounts below along), until the kernel says nothing is
 * mounted there: no process and no mount table read, as containerd's bundle
 * removal does.
 */
function unmountRootfs(rootfs: string): void {
  for (let i = 0; i < MAX_STACKED_MOUNTS; i++) {
    try {
      umount2(rootfs, Unmount.DETACH | Unmount.NOFOLLOW);
    } catch (err) {
      if (isErrno(err, "EINVAL") || isErrno(err, "ENOENT")) return; // nothing (more) mounted
      log.warn("cannot unmount bundle rootfs", { target: rootfs, error: String(err) });
      return;
    }
  }
}

/**
 * Removes the bundle: unmounts its rootfs, then removes the state directory
 * and the work directory it links to. A bundle already gone is fine.
 */
export async function deleteBundle(b: Bundle): Promise<void> {
  let work: string | undefined;
  try {
    work = await Deno.readLink(`${b.path}/work`);
  } catch { /* no work link: nothing to remove there */ }
  unmountRootfs(`${b.path}/rootfs`);
  await removeTree(b.path);
  if (work !== undefined) await removeTree(work);
}

/** Reads a small text file of the bundle ("address", "shim-binary-path"); undefined when missing. */
export async function readBundleFile(b: Bundle, name: string): Promise<string | undefined> {
  try {
    return (await Deno.readTextFile(`${b.path}/${name}`)).trim();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

/**
 * Writes a small text file of the bundle atomically (a restarted daemon
 * reads "address" back, so it is never seen half-written).
 */
export async function writeBundleFile(b: Bundle, name: string, text: string): Promise<void> {
  const tmp = `${b.path}/.${name}`;
  await Deno.writeTextFile(tmp, text, { mode: 0o600 });
  await Deno.rename(tmp, `${b.path}/${name}`);
}
