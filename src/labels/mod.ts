/**
 * Label rules shared by every store that keeps labels (containers, images,
 * content, snapshots, leases, namespaces), and the label keys berth gives a
 * meaning to. The limit matches containerd's, so labels round-trip between
 * the two runtimes.
 *
 * @example
 * ```ts
 * import { validateLabels } from "./mod.ts";
 * validateLabels({ "containerd.io/gc.root": "1" });
 * ```
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** Most bytes a label's key plus value may take (UTF-8). */
export const MAX_LABEL_SIZE = 4096;

/** Keeps an object (and what it references) alive through garbage collection. */
export const LABEL_GC_ROOT = "containerd.io/gc.root";
/** Prefix of labels whose value is a content digest the object keeps alive. */
export const LABEL_GC_REF_CONTENT = "containerd.io/gc.ref.content";
/** Prefix of labels `<prefix><snapshotter>[/<name>]` whose value is a snapshot key kept alive. */
export const LABEL_GC_REF_SNAPSHOT = "containerd.io/gc.ref.snapshot.";
/** On a lease: RFC 3339 time after which the lease no longer protects anything. */
export const LABEL_GC_EXPIRE = "containerd.io/gc.expire";
/** On a lease: protect only the named objects, not what they reference. */
export const LABEL_GC_FLAT = "containerd.io/gc.flat";
/** On a layer blob: the digest of its uncompressed form (the diff id). */
export const LABEL_UNCOMPRESSED = "containerd.io/uncompressed";

const encoder = new TextEncoder();

/**
 * Throws InvalidArgument when key and value together exceed
 * {@link MAX_LABEL_SIZE} bytes, or when the key is empty.
 */
export function validateLabel(key: string, value: string): void {
  if (key.length === 0) throw invalidArgument("label key must not be empty");
  const size = encoder.encode(key).length + encoder.encode(value).length;
  if (size > MAX_LABEL_SIZE) {
    throw invalidArgument(
      `label ${JSON.stringify(key.slice(0, 20))}: key and value are ${size} bytes, ` +
        `more than the ${MAX_LABEL_SIZE} allowed`,
    );
  }
}

/** Validates every entry of `labels` (see {@link validateLabel}); undefined is fine. */
export function validateLabels(labels: Record<string, string> | undefined): void {
  if (!labels) return;
  for (const [k, v] of Object.entries(labels)) validateLabel(k, v);
}

/**
 * Annotations that put containers in one shim, in order of precedence: an
 * explicit group, then the CRI's pod. containerd's runc shim reads the same
 * keys, so a group means the same to every shim.
 */
export const SHIM_GROUP_ANNOTATIONS = [
  "io.containerd.runc.v2.group",
  "io.kubernetes.cri.sandbox-id",
];

/** The explicit shim group an OCI spec's annotations name, if any. */
export function shimGroupAnnotation(
  annotations: Record<string, string> | undefined,
): string | undefined {
  for (const key of SHIM_GROUP_ANNOTATIONS) {
    const value = annotations?.[key];
    if (value) return value;
  }
  return undefined;
}
