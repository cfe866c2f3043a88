// The CRI's view of the image records of its namespace: one image per
// config digest (the image id), with every record name pointing at it as
// a reference. Computed from the metadata store on each call, so what
// other clients add or delete in the namespace shows at once; what is
// read from a target's blobs (immutable) is cached by target digest.

import { isDigest } from "../../content/mod.ts";
import { Code, invalidArgument, isCode, notFound } from "../../errdefs/mod.ts";
import {
  chainIds,
  type ContentAccess,
  type Descriptor,
  parseReference,
  type Platform,
  readJson,
  resolveManifest,
} from "../../images/mod.ts";
import { log } from "../../log/mod.ts";
import type { Metadata } from "../../metadata/mod.ts";

/** The OCI image config's fields the CRI shows. */
export interface ImageConfig {
  architecture?: string;
  os?: string;
  config?: { User?: string; [key: string]: unknown };
  rootfs?: { type?: string; diff_ids?: string[] };
  [key: string]: unknown;
}

/** One image as the CRI sees it. */
export interface CriImage {
  /** The config digest. */
  id: string;
  /** Every record name whose target resolves to this config, sorted. */
  references: string[];
  /** The target of the first reference (every reference's target has this config). */
  target: Descriptor;
  /** Bytes of the blobs the platform's image is made of (index, manifest, config, layers). */
  size: number;
  /** Chain id of the top layer (the snapshot a container's root file system starts from). */
  chainId: string;
  config: ImageConfig;
}

/** An image as its target describes it, before the names that point at it. */
export type Described = Omit<CriImage, "references" | "target">;

/**
 * A normalized reference as the CRI stores names: `busybox` ->
 * `docker.io/library/busybox:latest`; with a digest, the tag is dropped
 * (`repo@sha256:...`), as containerd's ParseDockerRef does.
 */
export function normalizeRef(ref: string): { name: string; repo: string; tagged: boolean } {
  const r = parseReference(ref);
  const repo = `${r.host}/${r.repository}`;
  if (r.digest) return { name: `${repo}@${r.digest}`, repo, tagged: false };
  return { name: `${repo}:${r.tag}`, repo, tagged: true };
}

/** The image views over namespace `namespace` of `md`. */
export class CriImageStore {
  private readonly described = new Map<string, Described>();

  constructor(
    private readonly md: Metadata,
    private readonly content: ContentAccess,
    readonly namespace: string,
    private readonly platform?: Platform,
  ) {}

  /** What `target` resolves to for the platform (its id, size, chain id, config). */
  async describe(target: Descriptor): Promise<Described> {
    const hit = this.described.get(target.digest);
    if (hit) return hit;
    const { desc, manifest } = await resolveManifest(this.content, target, this.platform);
    const config = await readJson<ImageConfig>(this.content, manifest.config.digest);
    const diffIds = config.rootfs?.diff_ids ?? [];
    let size = target.size + manifest.config.size;
    if (desc.digest !== target.digest) size += desc.size;
    for (const l of manifest.layers) size += l.size;
    const d: Described = {
      id: manifest.config.digest,
      size,
      chainId: chainIds(diffIds).at(-1) ?? "",
      config,
    };
    this.described.set(target.digest, d);
    return d;
  }

  /** Every image of the namespace whose blobs are present, by id. */
  async list(): Promise<Map<string, CriImage>> {
    const out = new Map<string, CriImage>();
    const seen = new Set<string>();
    for (const rec of this.md.images.list(this.namespace)) {
      seen.add(rec.target.digest);
      let d: Described;
      try {
        d = await this.describe(rec.target);
      } catch (err) {
        // An image whose blobs are gone or for another platform is no CRI image.
        log.debug("cri: image record skipped", {
          name: rec.name,
          error: (err as Error).message,
        });
        continue;
      }
      const img = out.get(d.id);
      if (img) img.references.push(rec.name);
      else out.set(d.id, { ...d, references: [rec.name], target: rec.target });
    }
    for (const k of this.described.keys()) if (!seen.has(k)) this.described.delete(k);
    for (const img of out.values()) img.references.sort();
    return out;
  }

  /**
   * The image `refOrId` names, as containerd's CRI resolves it: a full
   * image id, else a reference (normalized) to a record, else a unique
   * prefix of an id (with or without "sha256:"). NotFound otherwise;
   * InvalidArgument for a prefix that more than one id has.
   */
  async resolve(refOrId: string): Promise<CriImage> {
    const images = await this.list();
    if (isDigest(refOrId)) {
      const img = images.get(refOrId);
      if (img) return img;
      throw notFound(`image ${refOrId}`);
    }
    let name: string | undefined;
    try {
      name = normalizeRef(refOrId).name;
    } catch (err) {
      if (!isCode(err, Code.InvalidArgument)) throw err;
    }
    if (name !== undefined) {
      for (const img of images.values()) if (img.references.includes(name)) return img;
    }
    const hex = /^(?:sha256:)?([0-9a-f]{1,64})$/.exec(refOrId)?.[1];
    if (hex !== undefined) {
      const found = [...images.keys()].filter((id) => id.startsWith(`sha256:${hex}`));
      if (found.length === 1) return images.get(found[0])!;
      if (found.length > 1) {
        throw invalidArgument(`image id prefix ${JSON.stringify(refOrId)} is ambiguous`);
      }
    }
    throw notFound(`image ${JSON.stringify(refOrId)}`);
  }
}
