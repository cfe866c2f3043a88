/**
 * Reading images through the daemon's Content service, as the client needs
 * them: walk an image's index/manifest for this platform, sum its size, list
 * its platforms, check what is present, read its config, compute the chain
 * id its unpacked rootfs snapshot is named by.
 * @module
 */

import { Code, notFound } from "../errdefs/mod.ts";
import { Content } from "../gen/containerd/services/content/v1/content_pb.ts";
import { Images } from "../gen/containerd/services/images/v1/images_pb.ts";
import type { Image } from "../gen/containerd/services/images/v1/images_pb.ts";
import type { Connection } from "./connection.ts";
import { hintNotFound } from "./errors.ts";
import {
  chainId,
  DEFAULT_PLATFORM,
  formatPlatform,
  isIndex,
  isManifest,
  manifestsFor,
} from "../platforms/mod.ts";

/** An OCI descriptor as JSON manifests carry it. */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os?: string; architecture?: string; variant?: string };
  annotations?: Record<string, string>;
}

/** The parts of an OCI image config the client uses. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: {
    User?: string;
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    Labels?: Record<string, string>;
    StopSignal?: string;
  };
  rootfs?: { type: string; diff_ids: string[] };
}

/** Reads a whole blob from the daemon's content store. */
export async function readBlob(conn: Connection, digest: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const r of conn.service(Content).read({ digest })) {
    parts.push(r.data);
    total += r.data.length;
  }
  const out = new Uint8Array(total);
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** Reads and parses a JSON blob. */
export async function readJSON<T>(conn: Connection, digest: string): Promise<T> {
  return JSON.parse(new TextDecoder().decode(await readBlob(conn, digest))) as T;
}

/** Whether the content store has `digest`. */
export async function hasBlob(conn: Connection, digest: string): Promise<boolean> {
  try {
    await conn.service(Content).info({ digest });
    return true;
  } catch (err) {
    if ((err as { code?: Code }).code === Code.NotFound) return false;
    throw err;
  }
}

/** Gets an image record by name, with a hint when it is not there. */
export async function getImage(conn: Connection, name: string): Promise<Image> {
  try {
    const { image } = await conn.service(Images).get({ name });
    if (!image) throw notFound(`image "${name}"`);
    return image;
  } catch (err) {
    throw hintNotFound(
      err,
      `list images with: berth -n ${conn.namespace} images ls; import one with: berth -n ${conn.namespace} images import FILE.tar`,
    );
  }
}

/** The result of walking an image for this platform. */
export interface Walk {
  /** Every descriptor the image needs here: index, manifest, config, layers. */
  required: Descriptor[];
  /** Those of `required` the content store has. */
  present: Descriptor[];
  /** Platforms the image offers. */
  platforms: string[];
  /** The manifest for this platform, when found. */
  manifest?: { config: Descriptor; layers: Descriptor[] };
  /** The manifest's config, when the walk read it (to learn the platform). */
  config?: ImageConfig;
  /** False when a blob needed to go further (an index or manifest) is missing. */
  available: boolean;
}

/** Walks `target` (an index or manifest) for this machine's platform. */
export async function walkImage(conn: Connection, target: Descriptor): Promise<Walk> {
  const w: Walk = { required: [], present: [], platforms: [], available: true };
  const visit = async (d: Descriptor, top: boolean): Promise<void> => {
    w.required.push(d);
    if (!(await hasBlob(conn, d.digest))) {
      if (isIndex(d.mediaType) || isManifest(d.mediaType)) w.available = false;
      return;
    }
    w.present.push(d);
    if (isIndex(d.mediaType)) {
      const index = await readJSON<{ manifests?: Descriptor[] }>(conn, d.digest);
      for (const m of index.manifests ?? []) {
        if (m.platform) w.platforms.push(formatPlatform(m.platform));
      }
      const pick = manifestsFor(index.manifests ?? []).find((m) => isManifest(m.mediaType));
      if (pick) await visit(pick, false);
      return;
    }
    if (isManifest(d.mediaType)) {
      const m = await readJSON<{ config: Descriptor; layers?: Descriptor[] }>(conn, d.digest);
      w.manifest = { config: m.config, layers: m.layers ?? [] };
      const children = [m.config, ...(m.layers ?? [])];
      w.required.push(...children);
      // One round trip for all of them, not one after another.
      const have = await Promise.all(children.map((c) => hasBlob(conn, c.digest)));
      w.present.push(...children.filter((_, i) => have[i]));
      if (top && w.platforms.length === 0 && have[0]) {
        w.config = await readJSON<ImageConfig>(conn, m.config.digest);
        w.platforms.push(formatPlatform({ os: w.config.os, architecture: w.config.architecture }));
      }
    }
  };
  await visit(target, true);
  w.platforms = [...new Set(w.platforms)].sort();
  return w;
}

/** Sum of the sizes of descriptors. */
export function totalSize(ds: Descriptor[]): number {
  return ds.reduce((n, d) => n + Number(d.size), 0);
}

/** A protobuf image target as a JSON-style descriptor. */
export function targetOf(image: Image): Descriptor {
  const t = image.target;
  if (!t) throw notFound(`target of image "${image.name}"`);
  return {
    mediaType: t.mediaType,
    digest: t.digest,
    size: Number(t.size),
    annotations: t.annotations,
  };
}

/** The image config for this platform, and the chain id of its rootfs. */
export async function imageConfig(
  conn: Connection,
  image: Image,
): Promise<{ config: ImageConfig; chainId: string }> {
  const walk = await walkImage(conn, targetOf(image));
  if (!walk.manifest) {
    throw notFound(`a manifest for ${formatPlatform(DEFAULT_PLATFORM)} in image "${image.name}"`);
  }
  const config = walk.config ?? await readJSON<ImageConfig>(conn, walk.manifest.config.digest);
  return { config, chainId: await chainId(config.rootfs?.diff_ids ?? []) };
}
