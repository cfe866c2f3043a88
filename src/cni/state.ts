/**
 * What a pod's ADD used, kept on disk (`<stateDir>/<id>.json`) so that DEL
 * and CHECK replay exactly it: after a daemon crash, and when the
 * configuration directory changed meanwhile. Written before the first
 * plugin runs (a crash during ADD still leaves what DEL needs) and again
 * with the results; replaced atomically (write + rename).
 *
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { isObject, type NetworkList } from "./config.ts";

/** One network a pod is (being) attached to. */
export interface Attachment {
  /** The list as it was used, exactly. */
  network: NetworkList;
  ifname: string;
  /** The final result of ADD; absent until ADD finished. */
  result?: unknown;
}

/** A pod's whole network state. */
export interface PodNetworkState {
  /** The format of this file. */
  version: 1;
  containerId: string;
  netns: string;
  /** CNI_ARGS as given to ADD. */
  args: [string, string][];
  /** The capability arguments ADD got (portMappings, bandwidth, dns). */
  capabilityArgs: Record<string, unknown>;
  /** In the order ADD ran them (loopback first when enabled). */
  attachments: Attachment[];
}

/** The file of pod `id` under `dir`. */
export function statePath(dir: string, id: string): string {
  return `${dir.replace(/\/+$/, "")}/${id}.json`;
}

/** Reads pod `id`'s state; undefined when there is none. */
export async function readState(dir: string, id: string): Promise<PodNetworkState | undefined> {
  const path = statePath(dir, id);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    doc = undefined;
  }
  if (!isObject(doc) || doc.version !== 1 || !Array.isArray(doc.attachments)) {
    throw new BerthError(Code.DataLoss, `network state ${path} is unreadable`);
  }
  return doc as unknown as PodNetworkState;
}

/** Writes pod `id`'s state (0600), replacing any before it in one step. */
export async function writeState(dir: string, id: string, state: PodNetworkState): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const path = statePath(dir, id);
  const tmp = `${path}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(state), { mode: 0o600 });
  await Deno.rename(tmp, path);
}

/** Removes pod `id`'s state; a missing file is fine. */
export async function removeState(dir: string, id: string): Promise<void> {
  try {
    await Deno.remove(statePath(dir, id));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
