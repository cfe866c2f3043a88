/**
 * Exporting images as an OCI image layout archive, with a docker-style
 * manifest.json beside it (as `ctr images export` writes) so `docker load`
 * reads it too. Blobs stream from the content store into the tar.
 *
 * @module
 */

import { packTar, type TarOut } from "../archive/mod.ts";
import { Code, isCode, notFound } from "../errdefs/mod.ts";
import type { Descriptor, ImageBackend } from "./backend.ts";
import { type IndexJson, type ManifestJson, readJson, resolveManifest } from "./blobs.ts";
import { ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME } from "./import.ts";
import { isIndex, isManifest, OCI_INDEX, sniffMediaType } from "../platforms/mod.ts";
import { matchPlatform, type Platform } from "../platforms/mod.ts";
import { familiarName, parseReference } from "./reference.ts";

/** Options of {@link exportArchive}. */
export interface ExportOptions {
  /** Platform whose blobs are exported and whose manifest manifest.json lists (default linux/amd64). */
  platform?: Platform;
}

const EPOCH = new Date(0);

function blobPath(digest: string): string {
  return `blobs/${digest.replace(":", "/")}`;
}

function fileOut(name: string, bytes: Uint8Array): TarOut {
  return {
    header: { name, type: "file", mode: 0o644, uid: 0, gid: 0, size: bytes.length, mtime: EPOCH },
    data: [bytes] as unknown as AsyncIterable<Uint8Array>,
  };
}

async function has(b: ImageBackend, digest: string): Promise<boolean> {
  try {
    await b.content.info(digest);
    return true;
  } catch (err) {
    if (isCode(err, Code.NotFound)) return false;
    throw err;
  }
}

// Every blob under `desc` for `platform`, parents first. Index entries of
// other platforms, or absent from the store, are left out (as ctr exports
// only the default platform unless told otherwise); the index itself is
// kept as it is, so its digest does not change.
async function collect(
  b: ImageBackend,
  desc: Descriptor,
  out: Map<string, Descriptor>,
  platform: Platform | undefined,
  depth = 0,
) {
  if (out.has(desc.digest) || depth > 8) return;
  out.set(desc.digest, desc);
  const mt = desc.mediaType;
  if (!isIndex(mt) && !isManifest(mt)) return;
  const doc = await readJson(b.content, desc.digest);
  const kind = mt || sniffMediaType(doc);
  if (isIndex(kind)) {
    for (const m of (doc as unknown as IndexJson).manifests ?? []) {
      if (matchPlatform(m.platform, platform) && await has(b, m.digest)) {
        await collect(b, m, out, platform, depth + 1);
      }
    }
  } else {
    const m = doc as unknown as ManifestJson;
    for (const d of [m.config, ...m.layers]) {
      if (!await has(b, d.digest)) throw notFound(`content ${d.digest} of manifest ${desc.digest}`);
      out.set(d.digest, d);
    }
  }
}

/**
 * The archive of images `names` as a tar stream: `oci-layout`, every blob
 * under `blobs/<alg>/<hex>`, `index.json` naming each image with
 * `io.containerd.image.name` and its tag as `org.opencontainers.image.ref.name`,
 * and `manifest.json` for docker. NotFound for unknown names.
 */
export async function exportArchive(
  b: ImageBackend,
  names: string[],
  opts: ExportOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const blobs = new Map<string, Descriptor>();
  const index: IndexJson & { schemaVersion: number; mediaType: string } = {
    schemaVersion: 2,
    mediaType: OCI_INDEX,
    manifests: [],
  };
  const docker: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  for (const name of names) {
    const img = await b.images.get(name);
    if (!img) throw notFound(`image ${JSON.stringify(name)}`);
    await collect(b, img.target, blobs, opts.platform);
    const ref = parseReference(img.name);
    index.manifests.push({
      mediaType: img.target.mediaType,
      digest: img.target.digest,
      size: img.target.size,
      annotations: {
        ...(img.target.annotations ?? {}),
        [ANNOTATION_IMAGE_NAME]: img.name,
        ...(ref.tag ? { [ANNOTATION_REF_NAME]: ref.tag } : {}),
      },
    });
    try {
      const { manifest } = await resolveManifest(b.content, img.target, opts.platform);
      docker.push({
        Config: blobPath(manifest.config.digest),
        RepoTags: ref.tag ? [familiarName(img.name)] : [],
        Layers: manifest.layers.map((l) => blobPath(l.digest)),
      });
    } catch (err) {
      if (!isCode(err, Code.NotFound)) throw err; // no manifest for the platform: OCI only
    }
  }
  const enc = new TextEncoder();
  async function* entries(): AsyncGenerator<TarOut> {
    yield fileOut("oci-layout", enc.encode(JSON.stringify({ imageLayoutVersion: "1.0.0" })));
    for (const dir of ["blobs/", "blobs/sha256/"]) {
      yield {
        header: {
          name: dir,
          type: "directory",
          mode: 0o755,
          uid: 0,
          gid: 0,
          size: 0,
          mtime: EPOCH,
        },
      };
    }
    for (const d of blobs.values()) {
      const info = await b.content.info(d.digest);
      yield {
        header: {
          name: blobPath(d.digest),
          type: "file",
          mode: 0o444,
          uid: 0,
          gid: 0,
          size: info.size,
          mtime: EPOCH,
        },
        data: await b.content.read(d.digest),
      };
    }
    yield fileOut("index.json", enc.encode(JSON.stringify(index)));
    yield fileOut("manifest.json", enc.encode(JSON.stringify(docker)));
  }
  return packTar(entries());
}
