/**
 * The image a CRI request names, found in the k8s.io namespace's image
 * store (by reference, normalised as containerd does, or by its id, the
 * config digest) and unpacked into the snapshotter, with its config read.
 * @module
 */

import { Code, isCode, notFound } from "../errdefs/mod.ts";
import {
  type ImageBackend,
  normalizeName,
  readJson,
  resolveManifest,
  unpackImage,
} from "../images/mod.ts";
import type { ImageConfig } from "./spec.ts";

/** An image ready to run. */
export interface ResolvedImage {
  /** The reference it is stored under. */
  name: string;
  /** Its id: the config blob's digest. */
  id: string;
  /** Chain id of its top layer: the parent of a container's snapshot. */
  chainId: string;
  config: ImageConfig;
}

/** Finds `ref` (a reference or an image id), unpacks it into `snapshotter`, reads its config. */
export async function resolveImage(
  b: ImageBackend,
  ref: string,
  snapshotter: string,
): Promise<ResolvedImage> {
  let image = undefined;
  try {
    image = await b.images.get(normalizeName(ref));
  } catch (err) {
    if (!isCode(err, Code.InvalidArgument)) throw err; // not a reference: maybe an id
  }
  if (image === undefined) {
    const id = ref.startsWith("sha256:") ? ref : `sha256:${ref}`;
    for (const candidate of await b.images.list()) {
      const { manifest } = await resolveManifest(b.content, candidate.target).catch(() => ({
        manifest: undefined,
      }));
      if (manifest?.config.digest === id) {
        image = candidate;
        break;
      }
    }
  }
  if (image === undefined) throw notFound(`image ${JSON.stringify(ref)}`);
  const found = image;
  const { manifest } = await resolveManifest(b.content, found.target);
  const { chainId } = await b.withLease((leased) =>
    unpackImage(leased, found.target, { snapshotter })
  );
  const doc = await readJson<{ config?: ImageConfig }>(b.content, manifest.config.digest);
  return { name: found.name, id: manifest.config.digest, chainId, config: doc.config ?? {} };
}
