/**
 * Importing image archives: OCI image layouts (skopeo, umoci, `ctr images
 * export`) and `docker save` archives, read as one stream. Every file that
 * can be a blob goes straight into the content store as it passes (digest
 * checked when its path names one); the small index files are kept and
 * read at the end, since archives put them anywhere.
 *
 * @module
 */

import { isDigest } from "../content/mod.ts";
import { detectCompression, readTar } from "../archive/mod.ts";
import { invalidArgument } from "../errdefs/mod.ts";
import type { Descriptor, Image, ImageBackend } from "./backend.ts";
import {
  finishBlob,
  type IndexJson,
  MAX_JSON_SIZE,
  openWriter,
  putBytes,
  readJson,
} from "./blobs.ts";
import { labelChildren } from "./gclabels.ts";
import {
  DOCKER_CONFIG,
  DOCKER_LAYER,
  DOCKER_LAYER_GZIP,
  DOCKER_MANIFEST,
  OCI_INDEX,
  OCI_LAYER_ZSTD,
  sniffMediaType,
} from "../platforms/mod.ts";
import type { Platform } from "../platforms/mod.ts";
import { normalizeName } from "./reference.ts";
import { unpackImage, type UnpackResult } from "./unpack.ts";

/** The annotation containerd names an image with in an archive's index. */
export const ANNOTATION_IMAGE_NAME = "io.containerd.image.name";
/** The OCI annotation with the reference (or only the tag) of an index entry. */
export const ANNOTATION_REF_NAME = "org.opencontainers.image.ref.name";

/** Options of {@link importArchive}. */
export interface ImportOptions {
  /** Prefix for entries named only by a tag (ctr's --base-name): "<base>:<tag>". */
  baseName?: string;
  /** Also record the archive's whole index as an image of this name (ctr's --index-name). */
  indexName?: string;
  /** Unpack the images into snapshots (default true). */
  unpack?: boolean;
  /** Snapshotter to unpack into (default overlayfs). */
  snapshotter?: string;
  /** Platform to unpack (default linux/amd64). */
  platform?: Platform;
  /** Called as blobs are stored and images unpacked and recorded. */
  onProgress?: (p: ImportProgress) => void;
}

/** One step of an import, as reported to {@link ImportOptions.onProgress}. */
export interface ImportProgress {
  /** written/exists: a blob (`digest`, `size`); unpacked/created: an image (`name`). */
  status: "written" | "exists" | "unpacked" | "created";
  digest?: string;
  size?: number;
  name?: string;
}

/** What {@link importArchive} did. */
export interface ImportResult {
  images: Image[];
  /** Blobs written now, and blobs found in the store already. */
  written: number;
  existing: number;
  /** Unpack results by image name (when unpacking). */
  unpacked: Record<string, UnpackResult>;
}

/** One file of the archive that became a blob. */
interface Stored {
  digest: string;
  size: number;
}

/** Archive-internal names of the small files read at the end. */
const METADATA_FILES = new Set(["index.json", "manifest.json", "oci-layout", "repositories"]);

function cleanName(name: string): string {
  return name.replace(/^(\.\/|\/)+/, "").replace(/\/+$/, "");
}

async function readSmall(data: AsyncIterable<Uint8Array>, name: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let n = 0;
  for await (const c of data) {
    n += c.length;
    if (n > MAX_JSON_SIZE) throw invalidArgument(`${name} in the archive is too large`);
    parts.push(c);
  }
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

function parseJson<T>(bytes: Uint8Array, name: string): T {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as T;
  } catch (err) {
    throw invalidArgument(`${name} in the archive is not JSON: ${(err as Error).message}`);
  }
}

/** The image name for an index entry, as containerd's importer derives it; undefined to skip it. */
export function entryName(
  annotations: Record<string, string> | undefined,
  baseName?: string,
): string | undefined {
  const full = annotations?.[ANNOTATION_IMAGE_NAME];
  if (full) return normalizeName(full);
  const ref = annotations?.[ANNOTATION_REF_NAME];
  if (!ref) return undefined;
  // A full reference names the image itself; a bare tag needs the base name.
  if (/[/:@]/.test(ref)) return normalizeName(ref);
  return baseName ? normalizeName(`${baseName}:${ref}`) : undefined;
}

/** Reads the start of blob `digest` to tell gzip from an uncompressed layer. */
async function layerMediaType(b: ImageBackend, digest: string): Promise<string> {
  const reader = (await b.content.read(digest)).getReader();
  try {
    const { value } = await reader.read();
    const c = detectCompression(value ?? new Uint8Array());
    return c === "gzip" ? DOCKER_LAYER_GZIP : c === "zstd" ? OCI_LAYER_ZSTD : DOCKER_LAYER;
  } finally {
    await reader.cancel().catch(() => {});
  }
}

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

// docker save's manifest.json lists files; containerd turns each entry into
// a Docker schema 2 manifest, and so does berth.
async function dockerImages(
  b: ImageBackend,
  entries: DockerManifestEntry[],
  files: Map<string, Stored>,
): Promise<{ name: string; target: Descriptor }[]> {
  const out: { name: string; target: Descriptor }[] = [];
  const file = (p: string) => {
    const f = files.get(cleanName(p));
    if (!f) throw invalidArgument(`manifest.json names ${p}, which the archive does not hold`);
    return f;
  };
  for (const e of entries) {
    if (!e.Config || !Array.isArray(e.Layers)) {
      throw invalidArgument("manifest.json entry lacks Config or Layers");
    }
    const cfg = file(e.Config);
    const layers = [];
    for (const l of e.Layers) {
      const f = file(l);
      layers.push({ mediaType: await layerMediaType(b, f.digest), digest: f.digest, size: f.size });
    }
    const manifest = {
      schemaVersion: 2,
      mediaType: DOCKER_MANIFEST,
      config: { mediaType: DOCKER_CONFIG, digest: cfg.digest, size: cfg.size },
      layers,
    };
    const target = await putBytes(
      b.content,
      new TextEncoder().encode(JSON.stringify(manifest)),
      DOCKER_MANIFEST,
    );
    for (const tag of e.RepoTags ?? []) out.push({ name: normalizeName(tag), target });
  }
  return out;
}

/**
 * Imports the archive `archive` (a tar stream, read once). Blobs are
 * verified against the digests their paths name; a mismatch aborts with
 * FailedPrecondition and leaves nothing of that blob. Images are named
 * from `io.containerd.image.name` / `org.opencontainers.image.ref.name`
 * (OCI) or RepoTags (docker save), labelled for the garbage collector and,
 * unless `unpack` is false, unpacked; all under one lease.
 */
export function importArchive(
  backend: ImageBackend,
  archive: ReadableStream<Uint8Array>,
  opts: ImportOptions = {},
): Promise<ImportResult> {
  const report = opts.onProgress ?? (() => {});
  return backend.withLease(async (b) => {
    const files = new Map<string, Stored>();
    const meta = new Map<string, Uint8Array>();
    let written = 0;
    let existing = 0;
    for await (const entry of readTar(archive)) {
      const h = entry.header;
      const name = cleanName(h.name);
      if (h.type === "link" && h.linkname) {
        const target = files.get(cleanName(h.linkname));
        if (target) files.set(name, target);
        continue;
      }
      if (h.type !== "file" && h.type !== "contiguous-file") continue;
      if (METADATA_FILES.has(name)) {
        meta.set(name, await readSmall(entry.data, name));
        continue;
      }
      const m = /^blobs\/([a-z0-9]+)\/([a-f0-9]+)$/.exec(name);
      const expected = m && isDigest(`${m[1]}:${m[2]}`) ? `${m[1]}:${m[2]}` : undefined;
      const ref = expected ? `import-${expected}` : `import-${crypto.randomUUID()}`;
      const w = await openWriter(b.content, ref, { total: h.size, expected });
      if (!w) {
        existing++;
        report({ status: "exists", digest: expected, size: h.size });
        files.set(name, { digest: expected!, size: h.size });
        continue; // readTar skips the unread body
      }
      if (w.offset > 0) await w.truncate(); // an interrupted import: the tar cannot seek, start over
      const digest = await finishBlob(b.content, w, ref, entry.data, {
        size: h.size,
        expected,
        what: `${name} in the archive`,
      });
      written++;
      report({ status: "written", digest, size: h.size });
      files.set(name, { digest, size: h.size });
    }

    let named: { name: string; target: Descriptor }[] = [];
    const indexBytes = meta.get("index.json");
    let index: IndexJson | undefined;
    if (indexBytes) {
      index = parseJson<IndexJson>(indexBytes, "index.json");
      if (!Array.isArray(index.manifests)) throw invalidArgument("index.json has no manifests");
      for (const d of index.manifests) {
        if (!files.has(`blobs/${d.digest.replace(":", "/")}`)) {
          throw invalidArgument(`index.json names ${d.digest}, which the archive does not hold`);
        }
        const name = entryName(d.annotations, opts.baseName);
        if (name) {
          // OCI lets index entries leave the media type out; the document says what it is.
          const mediaType = d.mediaType || sniffMediaType(await readJson(b.content, d.digest));
          named.push({ name, target: { mediaType, digest: d.digest, size: d.size } });
        }
      }
    }
    const dockerBytes = meta.get("manifest.json");
    if (named.length === 0 && dockerBytes) {
      named = await dockerImages(
        b,
        parseJson<DockerManifestEntry[]>(dockerBytes, "manifest.json"),
        files,
      );
    }
    if (!indexBytes && !dockerBytes) {
      throw invalidArgument("not an image archive: neither index.json nor manifest.json found");
    }
    if (opts.indexName && indexBytes) {
      const mt = sniffMediaType(index!) || OCI_INDEX;
      const target = await putBytes(b.content, indexBytes, mt);
      named.push({ name: normalizeName(opts.indexName), target });
    }
    if (named.length === 0) {
      throw invalidArgument(
        "the archive names no image (no io.containerd.image.name, full ref.name or RepoTags); give a base name",
      );
    }

    const images: Image[] = [];
    const unpacked: Record<string, UnpackResult> = {};
    for (const { name, target } of named) {
      await labelChildren(b.content, target, opts.platform);
      if (opts.unpack !== false) {
        unpacked[name] = await unpackImage(b, target, opts);
        report({ status: "unpacked", name });
      }
      images.push(await b.images.put({ name, target }));
      report({ status: "created", name });
    }
    return { images, written, existing, unpacked };
  });
}
