/**
 * The garbage collector's view of an image: labels on the index, manifest
 * and config that name their children, set as containerd sets them, so
 * that an image record keeps exactly its own blobs and snapshots alive.
 *
 * @module
 */

import { Code, isCode } from "../errdefs/mod.ts";
import { LABEL_GC_REF_CONTENT, LABEL_GC_REF_SNAPSHOT } from "../labels/mod.ts";
import type { ContentAccess, Descriptor } from "./backend.ts";
import { type IndexJson, type ManifestJson, readJson } from "./blobs.ts";
import { isIndex, isManifest, sniffMediaType } from "../platforms/mod.ts";
import { matchPlatform, type Platform } from "../platforms/mod.ts";

async function present(content: ContentAccess, digest: string): Promise<boolean> {
  try {
    await content.info(digest);
    return true;
  } catch (err) {
    if (isCode(err, Code.NotFound)) return false;
    throw err;
  }
}

/**
 * Labels the tree under `target`: an index gets `gc.ref.content.m.<i>`
 * for each child of `platform` that is present (followed in turn), a
 * manifest gets `gc.ref.content.config` and `gc.ref.content.l.<i>`.
 * Children of other platforms, absent from the store, are left unlabelled
 * as containerd leaves what it did not fetch.
 */
export async function labelChildren(
  content: ContentAccess,
  target: Descriptor,
  platform?: Platform,
  depth = 0,
): Promise<void> {
  if (depth > 8) return;
  const doc = await readJson(content, target.digest);
  const mt = target.mediaType || sniffMediaType(doc);
  const labels: Record<string, string> = {};
  if (isIndex(mt)) {
    let i = 0;
    for (const m of (doc as unknown as IndexJson).manifests ?? []) {
      if (!matchPlatform(m.platform, platform) || !await present(content, m.digest)) continue;
      labels[`${LABEL_GC_REF_CONTENT}.m.${i++}`] = m.digest;
      await labelChildren(content, m, platform, depth + 1);
    }
  } else if (isManifest(mt)) {
    const m = doc as unknown as ManifestJson;
    labels[`${LABEL_GC_REF_CONTENT}.config`] = m.config.digest;
    m.layers.forEach((l, i) => labels[`${LABEL_GC_REF_CONTENT}.l.${i}`] = l.digest);
  }
  await content.setLabels(target.digest, labels);
}

/** The label on an image config that keeps its unpacked snapshot chain alive. */
export function snapshotLabel(snapshotter: string): string {
  return `${LABEL_GC_REF_SNAPSHOT}${snapshotter}`;
}
