/**
 * Applying layers to snapshot mounts and turning mounts' differences into
 * layers, without mounting: berth's snapshotters return mounts whose
 * directories can be written directly (an overlay's upperdir, a bind's
 * source), which is both faster and needs no mount privileges.
 *
 * @module
 */

import { applyLayer, diffTar } from "../archive/mod.ts";
import { DigestingStream } from "../content/mod.ts";
import { unimplemented } from "../errdefs/mod.ts";
import { LABEL_UNCOMPRESSED } from "../labels/mod.ts";
import type { ContentAccess, Descriptor, LayerDiffer, Mount } from "./backend.ts";
import { OCI_LAYER, OCI_LAYER_GZIP } from "../platforms/mod.ts";

/** Where a layer is written for `mounts`, and how whiteouts are expressed there. */
export interface WritableDir {
  dir: string;
  whiteouts: "overlay" | "delete";
}

function option(m: Mount, name: string): string | undefined {
  const o = m.options.find((o) => o.startsWith(`${name}=`));
  return o?.slice(name.length + 1);
}

/**
 * The directory to apply a layer into for `mounts`: the upperdir of an
 * overlay (overlay whiteouts, so the lower layers stay untouched) or the
 * source of a read-write bind (real deletions). Anything else is
 * Unimplemented.
 */
export function writableDir(mounts: Mount[]): WritableDir {
  if (mounts.length === 1) {
    const m = mounts[0];
    if (m.type === "overlay") {
      const upper = option(m, "upperdir");
      if (upper) return { dir: upper, whiteouts: "overlay" };
    } else if (m.type === "bind" && !m.options.includes("ro")) {
      return { dir: m.source, whiteouts: "delete" };
    }
  }
  throw unimplemented(
    `cannot apply a layer to mounts ${
      JSON.stringify(mounts)
    }: want one read-write bind or an overlay with an upperdir`,
  );
}

/** The directory a read-only lower side stands for (undefined: empty). */
function lowerDir(mounts: Mount[]): string | undefined {
  if (mounts.length === 0) return undefined;
  if (mounts.length === 1 && mounts[0].type === "bind") return mounts[0].source;
  if (mounts.length === 1 && mounts[0].type === "overlay") {
    const lowers = option(mounts[0], "lowerdir")?.split(":") ?? [];
    if (!option(mounts[0], "upperdir") && lowers.length === 1) return lowers[0];
  }
  throw unimplemented(`cannot compare against mounts ${JSON.stringify(mounts)}`);
}

/** Applies the layer `layer` (any compression) to `mounts`; returns diff id and uncompressed size. */
export async function applyToMounts(
  mounts: Mount[],
  layer: ReadableStream<Uint8Array>,
  mediaType?: string,
): Promise<{ digest: string; size: number }> {
  const { dir, whiteouts } = writableDir(mounts);
  return await applyLayer(dir, layer, { whiteouts, mediaType });
}

/**
 * The uncompressed layer of the changes from `lower` to `upper`. An
 * overlay upper with an upperdir is read on its own (its whiteouts say
 * what was deleted); a bind upper is compared with `lower`.
 */
export async function diffMounts(
  lower: Mount[],
  upper: Mount[],
): Promise<{ stream: ReadableStream<Uint8Array>; done: () => Promise<void> }> {
  if (upper.length === 1 && upper[0].type === "overlay") {
    const dir = option(upper[0], "upperdir");
    if (!dir) throw unimplemented("diff of an overlay without upperdir");
    return { stream: diffTar({ upper: dir }), done: async () => {} };
  }
  if (upper.length !== 1 || upper[0].type !== "bind") {
    throw unimplemented(`cannot diff mounts ${JSON.stringify(upper)}`);
  }
  let lowerPath = lowerDir(lower);
  let temp: string | undefined;
  if (lowerPath === undefined) {
    lowerPath = temp = await Deno.makeTempDir({ prefix: "berth-empty-" });
  }
  return {
    stream: diffTar({ lower: lowerPath, upper: upper[0].source }),
    done: async () => {
      if (temp) await Deno.remove(temp, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * Gzips `tar` into the content store under `ref` and returns the blob's
 * descriptor; the blob is labelled with its diff id, which is also returned.
 */
export async function writeLayer(
  content: ContentAccess,
  tar: ReadableStream<Uint8Array>,
  ref: string,
  labels: Record<string, string> = {},
  compress = true,
): Promise<{ desc: Descriptor; diffId: string; uncompressedSize: number }> {
  const diff = new DigestingStream();
  const counted = tar.pipeThrough(diff);
  const body = compress
    ? counted.pipeThrough(
      new CompressionStream("gzip") as unknown as TransformStream<Uint8Array, Uint8Array>,
    )
    : counted;
  const w = await content.writer(ref);
  let size = 0;
  try {
    await w.truncate();
    for await (const chunk of body) {
      await w.write(chunk);
      size += chunk.length;
    }
    const diffId = diff.digest();
    const digest = await w.commit(size, undefined, { ...labels, [LABEL_UNCOMPRESSED]: diffId });
    return {
      desc: { mediaType: compress ? OCI_LAYER_GZIP : OCI_LAYER, digest, size },
      diffId,
      uncompressedSize: diff.size,
    };
  } catch (err) {
    await w.close().catch(() => {});
    await content.abort(ref).catch(() => {});
    throw err;
  }
}

/** A {@link LayerDiffer} over local directories and `content`. */
export function localDiffer(content: ContentAccess): LayerDiffer {
  return {
    async apply(desc, mounts) {
      const r = await applyToMounts(mounts, await content.read(desc.digest), desc.mediaType);
      return { mediaType: OCI_LAYER, digest: r.digest, size: r.size };
    },
    async diff(lower, upper, opts = {}) {
      const { stream, done } = await diffMounts(lower, upper);
      try {
        const ref = opts.ref || `diff-${crypto.randomUUID()}`;
        const mt = opts.mediaType || OCI_LAYER_GZIP;
        if (mt !== OCI_LAYER_GZIP && mt !== OCI_LAYER) {
          throw unimplemented(
            `diff media type ${mt} (berth writes ${OCI_LAYER_GZIP} or ${OCI_LAYER})`,
          );
        }
        return (await writeLayer(content, stream, ref, opts.labels, mt === OCI_LAYER_GZIP)).desc;
      } finally {
        await done();
      }
    },
  };
}
