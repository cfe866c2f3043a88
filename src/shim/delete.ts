/**
 * The `delete` action: containerd runs it when a shim died, to clean up
 * after it: force-delete the container in the runtime, unmount its rootfs,
 * remove the shim's dead socket, and answer with a DeleteResponse (pid from
 * init.pid, exit status 128+SIGKILL, now) on stdout.
 *
 * containerd runs it after every shim disconnect, also after a clean
 * Shutdown, and waits for it before `ctr run --rm` returns: so it loads no
 * protobuf library (the three-field answer is encoded here) and skips runc
 * when the runtime holds no state for the container.
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { readPidFile, runcDelete } from "../runc/mod.ts";
import type { ShimFlags } from "./flags.ts";
import { readRuntimeOptions, runcConfigFor } from "./options.ts";
import { unmountAll } from "../mount/mod.ts";
import { canConnect, lockGroup, removeGroupFiles } from "./socket.ts";

const SIGKILL = 9;

/** Cleans up after a dead shim; returns the encoded DeleteResponse. */
export async function deleteAfterDeadShim(flags: ShimFlags): Promise<Uint8Array> {
  if (!flags.namespace) throw invalidArgument("shim namespace cannot be empty");
  if (!flags.id) throw invalidArgument("shim id cannot be empty");
  const bundle = flags.bundle || Deno.cwd();
  const opts = await readRuntimeOptions(bundle);
  const cfg = runcConfigFor(opts, flags.namespace, bundle);
  const hasState = await Deno.stat(`${cfg.root}/${flags.id}`).then(() => true, () => false);
  if (hasState) {
    try {
      await runcDelete(cfg, flags.id, true);
    } catch (err) {
      log.warn("failed to remove runc container", { id: flags.id, error: err });
    }
  }
  try {
    await unmountAll(`${bundle}/rootfs`);
  } catch (err) {
    log.warn("failed to clean up rootfs mount", { id: flags.id, error: err });
  }
  let pid = 0;
  try {
    pid = await readPidFile(`${bundle}/init.pid`);
  } catch (err) {
    log.warn("failed to read init pid file", { id: flags.id, error: err });
  }
  await removeDeadSocket(bundle);
  return encodeDeleteResponse(pid, 128 + SIGKILL, Date.now());
}

function varint(out: number[], value: number): void {
  let v = BigInt(value);
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
}

/**
 * containerd.task.v2.DeleteResponse: pid = 1, exit_status = 2 (uint32),
 * exited_at = 3 (google.protobuf.Timestamp: seconds = 1, nanos = 2).
 */
export function encodeDeleteResponse(
  pid: number,
  exitStatus: number,
  exitedAtMs: number,
): Uint8Array {
  const seconds = Math.floor(exitedAtMs / 1000);
  const nanos = Math.round((exitedAtMs - seconds * 1000) * 1e6);
  // proto3 leaves zero values out.
  const field = (out: number[], tag: number, value: number) => {
    if (value === 0) return;
    out.push(tag);
    varint(out, value);
  };
  const ts: number[] = [];
  field(ts, 0x08, seconds);
  field(ts, 0x10, nanos);
  const out: number[] = [];
  field(out, 0x08, pid);
  field(out, 0x10, exitStatus);
  out.push(0x1a);
  varint(out, ts.length);
  out.push(...ts);
  return new Uint8Array(out);
}

/** Removes the shim's socket (and lock) named in the bundle's `address` if nobody serves it any more. */
async function removeDeadSocket(bundle: string): Promise<void> {
  let address: string;
  try {
    address = (await Deno.readTextFile(`${bundle}/address`)).trim();
  } catch {
    return;
  }
  const path = address.replace(/^unix:\/\//, "");
  if (!path.startsWith("/")) return;
  const unlock = await lockGroup(path);
  try {
    // A group shim may still serve other containers: then the socket stays.
    if (!(await canConnect(path))) removeGroupFiles(path);
  } finally {
    unlock();
  }
}
