/**
 * The `delete` action: containerd runs it when a shim died, to clean up
 * after it: force-delete the container in the runtime, unmount its rootfs,
 * remove the shim's dead socket, and answer with a DeleteResponse (pid from
 * init.pid, exit status 128+SIGKILL, now) on stdout.
 * @module
 */

import { create, toBinary } from "@bufbuild/protobuf";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { readPidFile, runcDelete } from "../runc/mod.ts";
import { DeleteResponseSchema } from "../gen/containerd/task/v2/shim_pb.ts";
import type { ShimFlags } from "./flags.ts";
import { readRuntimeOptions, runcConfigFor } from "./options.ts";
import { unmountAll } from "./rootfs.ts";
import { canConnect, lockGroup, removeGroupFiles } from "./socket.ts";

const SIGKILL = 9;

/** Cleans up after a dead shim; returns the encoded DeleteResponse. */
export async function deleteAfterDeadShim(flags: ShimFlags): Promise<Uint8Array> {
  if (!flags.namespace) throw invalidArgument("shim namespace cannot be empty");
  if (!flags.id) throw invalidArgument("shim id cannot be empty");
  const bundle = flags.bundle || Deno.cwd();
  const opts = await readRuntimeOptions(bundle);
  const cfg = runcConfigFor(opts, flags.namespace, bundle);
  try {
    await runcDelete(cfg, flags.id, true);
  } catch (err) {
    log.warn("failed to remove runc container", { id: flags.id, error: err });
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
  return toBinary(
    DeleteResponseSchema,
    create(DeleteResponseSchema, { pid, exitStatus: 128 + SIGKILL, exitedAt: timestampFromDate(new Date()) }),
  );
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
