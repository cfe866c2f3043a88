/**
 * The image backend over the daemon's own stores: namespaced content,
 * metadata and snapshotters, in this process.
 *
 * @module
 */

import { Code, isCode, notFound } from "../errdefs/mod.ts";
import { LABEL_GC_EXPIRE } from "../labels/mod.ts";
import type { Metadata, NamespacedSnapshotter } from "../metadata/mod.ts";
import type { NamespacedContent } from "../metadata/mod.ts";
import { DEFAULT_SNAPSHOTTER } from "../snapshots/mod.ts";
import type {
  BlobWriter,
  ContentAccess,
  ImageBackend,
  ImageRecords,
  LayerSnapshots,
} from "./backend.ts";
import { localDiffer } from "./differ.ts";

/** What {@link localBackend} works over. */
export interface LocalStores {
  content: NamespacedContent;
  md: Metadata;
  /** Namespaced snapshotters by name ("overlayfs", "native"). */
  snapshotters: Record<string, NamespacedSnapshotter>;
}

/** How long an import's lease protects its objects if berth dies before deleting it. */
const LEASE_EXPIRY_MS = 24 * 3600 * 1000;

function labelPaths(labels: Record<string, string>): string[] {
  return Object.keys(labels).map((k) => `labels.${k}`);
}

/**
 * Content access for namespace `ns` over the local stores; `lease` holds
 * what is written (the Diff service uses this for the caller's lease).
 */
export function localContent(
  s: Pick<LocalStores, "content">,
  ns: string,
  lease?: string,
): ContentAccess {
  const { content } = s;
  const setLabels = (digest: string, labels: Record<string, string>) => {
    if (Object.keys(labels).length > 0) content.update(ns, digest, labels, labelPaths(labels));
    return Promise.resolve();
  };
  return {
    info: (digest) => Promise.resolve().then(() => content.info(ns, digest)),
    read: (digest, offset = 0) => content.read(ns, digest, offset),
    async writer(ref, opts = {}) {
      // A blob the namespace holds already is AlreadyExists, and in the lease from then on.
      const w = await content.writer(ns, ref, {
        total: opts.total,
        expected: opts.expected,
        lease,
      });
      const bw: BlobWriter = {
        get offset() {
          return w.status().offset;
        },
        write: (chunk) => w.write(chunk),
        truncate: () => w.truncate(0),
        async commit(size, expected, labels = {}) {
          try {
            return await w.commit(size, expected, labels);
          } catch (err) {
            if (!isCode(err, Code.AlreadyExists)) throw err;
            // This namespace had it already (another import won the race); the
            // commit put it in the lease and removed the ingest.
            const digest = w.digest();
            await setLabels(digest, labels);
            return digest;
          }
        },
        close: () => w.close(),
      };
      return bw;
    },
    async abort(ref) {
      try {
        await content.abort(ns, ref);
      } catch (err) {
        if (!isCode(err, Code.NotFound)) throw err;
      }
    },
    setLabels,
  };
}

function imageRecords(s: LocalStores, ns: string): ImageRecords {
  const { md } = s;
  return {
    get(name) {
      try {
        return Promise.resolve(md.images.get(ns, name));
      } catch (err) {
        if (isCode(err, Code.NotFound)) return Promise.resolve(undefined);
        return Promise.reject(err);
      }
    },
    put(image) {
      return Promise.resolve().then(() => {
        try {
          return md.images.create(ns, image);
        } catch (err) {
          if (!isCode(err, Code.AlreadyExists)) throw err;
          const paths = ["target", ...labelPaths(image.labels ?? {})];
          return md.images.update(ns, image, paths);
        }
      });
    },
    list: (filters) => Promise.resolve().then(() => md.images.list(ns, filters)),
    delete: (name) => Promise.resolve().then(() => md.images.delete(ns, name)),
  };
}

function layerSnapshots(sn: NamespacedSnapshotter, ns: string, lease?: string): LayerSnapshots {
  return {
    name: sn.name,
    async exists(key) {
      try {
        await sn.stat(ns, key);
        return true;
      } catch (err) {
        if (isCode(err, Code.NotFound)) return false;
        throw err;
      }
    },
    prepare: (key, parent, labels) => sn.prepare(ns, key, parent, { labels, lease }),
    commit: (name, key, labels) => sn.commit(ns, name, key, { labels, lease }),
    remove: (key) => sn.remove(ns, key),
    mounts: (key) => sn.mounts(ns, key),
  };
}

/**
 * An {@link ImageBackend} for namespace `namespace` over the local stores:
 * what the daemon and tests use. `lease`, when given, holds everything
 * written through it.
 */
export function localBackend(s: LocalStores, namespace: string, lease?: string): ImageBackend {
  const content = localContent(s, namespace, lease);
  return {
    content,
    images: imageRecords(s, namespace),
    differ: localDiffer(content),
    snapshots(name = DEFAULT_SNAPSHOTTER) {
      const sn = s.snapshotters[name];
      if (!sn) throw notFound(`snapshotter ${JSON.stringify(name)}`);
      return layerSnapshots(sn, namespace, lease);
    },
    async withLease(fn) {
      const id = `berth-images-${crypto.randomUUID()}`;
      const expire = new Date(Date.now() + LEASE_EXPIRY_MS).toISOString();
      s.md.leases.create(namespace, id, { [LABEL_GC_EXPIRE]: expire });
      try {
        return await fn(localBackend(s, namespace, id));
      } finally {
        s.md.leases.delete(namespace, id);
      }
    },
  };
}
