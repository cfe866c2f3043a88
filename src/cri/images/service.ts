// The CRI ImageService over the daemon's own stores: pulls through
// src/images (mirrors, TLS and credentials resolved per endpoint), image
// records named as containerd's CRI names them, and the snapshotter's
// usage for ImageFsInfo.

import { create } from "@bufbuild/protobuf";
import type { RegistryConfig } from "../../config/mod.ts";
import { isDigest } from "../../content/mod.ts";
import { BerthError, Code, invalidArgument, isCode, toBerthError } from "../../errdefs/mod.ts";
import { type Exchange, Topic } from "../../events/mod.ts";
import {
  ImageCreateSchema,
  ImageDeleteSchema,
  ImageUpdateSchema,
} from "../../gen/containerd/events/image_pb.ts";
import {
  type Image as ImageMessage,
  ImageSchema,
  ImageService,
} from "../../gen/k8s/cri/runtime/v1/api_pb.ts";
import {
  type Descriptor,
  localBackend,
  localContent,
  parseReference,
  type Platform,
  pullImage,
  type RegistryOptions,
} from "../../images/mod.ts";
import { log } from "../../log/mod.ts";
import type { Metadata, NamespacedSnapshotter } from "../../metadata/mod.ts";
import type { NamespacedContent } from "../../services/content/namespaced.ts";
import type { Collector } from "../../services/service.ts";
import { DEFAULT_SNAPSHOTTER } from "../../snapshots/mod.ts";
import type { ServiceImpl } from "../../ttrpc/mod.ts";
import { endpointOptions, registryEndpoints } from "./registry.ts";
import { type CriImage, CriImageStore, normalizeRef } from "./store.ts";

/** The label containerd's CRI puts on the image records it manages. */
export const LABEL_CRI_IMAGE = "io.cri-containerd.image";
/** Its value. */
export const LABEL_CRI_IMAGE_MANAGED = "managed";

/** The namespace the CRI's images live in, as in containerd. */
export const CRI_NAMESPACE = "k8s.io";

/** What {@link imageService} works over. */
export interface ImageServiceDeps {
  md: Metadata;
  content: NamespacedContent;
  /** Namespaced snapshotters by name ("overlayfs", "native"). */
  snapshotters: Record<string, NamespacedSnapshotter>;
  /** Mirrors and per-host TLS and credentials (`registryConfig(config)`). */
  registry: RegistryConfig;
  /** Default "k8s.io". */
  namespace?: string;
  /** Where images are unpacked, and whose usage ImageFsInfo reports (default overlayfs). */
  snapshotter?: string;
  /** Default linux/amd64. */
  platform?: Platform;
  /** The garbage collector, run before RemoveImage answers (as containerd's synchronous delete). */
  gc?: () => Collector | undefined;
  /** Where image create, update and delete events go. */
  events?: Exchange;
}

/** The user the image config names: a numeric uid, or a user name (a group is dropped). */
export function imageUser(user: string | undefined): { uid?: bigint; username: string } {
  if (!user) return { username: "" };
  const name = user.split(":")[0];
  if (/^\d+$/.test(name)) return { uid: BigInt(name), username: "" };
  return { username: name };
}

/** The references of an image split as crictl shows them: repo:tag names, and repo@digest names. */
export function splitReferences(refs: string[]): { repoTags: string[]; repoDigests: string[] } {
  const repoTags: string[] = [];
  const repoDigests: string[] = [];
  for (const ref of refs) {
    if (isDigest(ref)) continue; // the id reference
    let r;
    try {
      r = parseReference(ref);
    } catch {
      continue;
    }
    const repo = `${r.host}/${r.repository}`;
    if (r.digest) repoDigests.push(`${repo}@${r.digest}`);
    else if (/:[\w][\w.-]*$/.test(ref.slice(ref.lastIndexOf("/") + 1))) {
      repoTags.push(`${repo}:${r.tag}`);
    }
  }
  return { repoTags, repoDigests };
}

/** A CRI image view as the Image message. */
export function toCriImage(img: CriImage): ImageMessage {
  const { uid, username } = imageUser(img.config.config?.User);
  return create(ImageSchema, {
    id: img.id,
    ...splitReferences(img.references),
    size: BigInt(img.size),
    uid: uid === undefined ? undefined : { value: uid },
    username,
    spec: { image: img.id },
  });
}

/**
 * The CRI ImageService (runtime.v1) over the local stores, in namespace
 * k8s.io: PullImage, ImageStatus, ListImages, RemoveImage, ImageFsInfo.
 */
export function imageService(deps: ImageServiceDeps): ServiceImpl<typeof ImageService> {
  const ns = deps.namespace ?? CRI_NAMESPACE;
  const snapshotter = deps.snapshotter ?? DEFAULT_SNAPSHOTTER;
  const backend = localBackend(deps, ns);
  const store = new CriImageStore(deps.md, localContent(deps, ns), ns, deps.platform);
  const managed = { [LABEL_CRI_IMAGE]: LABEL_CRI_IMAGE_MANAGED };

  /** The record `name`, or undefined. */
  const record = (name: string) => {
    try {
      return deps.md.images.get(ns, name);
    } catch (err) {
      if (isCode(err, Code.NotFound)) return undefined;
      throw err;
    }
  };
  const emitCreate = (name: string) =>
    deps.events?.publish(
      ns,
      Topic.ImageCreate,
      ImageCreateSchema,
      create(ImageCreateSchema, { name, labels: managed }),
    );
  const emitUpdate = (name: string, labels: Record<string, string>) =>
    deps.events?.publish(
      ns,
      Topic.ImageUpdate,
      ImageUpdateSchema,
      create(ImageUpdateSchema, { name, labels }),
    );

  /** Points `name` at `target` with the managed label, creating it if needed. */
  const putReference = (name: string, target: Descriptor) => {
    try {
      deps.md.images.create(ns, { name, target, labels: managed });
      emitCreate(name);
    } catch (err) {
      if (!isCode(err, Code.AlreadyExists)) throw err;
      const old = deps.md.images.get(ns, name);
      if (old.target.digest === target.digest && old.labels[LABEL_CRI_IMAGE] === "managed") return;
      const img = deps.md.images.update(ns, { name, target, labels: managed }, [
        "target",
        `labels.${LABEL_CRI_IMAGE}`,
      ]);
      emitUpdate(name, img.labels);
    }
  };

  const pull = async (ref: string, auth: Parameters<typeof endpointOptions>[2]) => {
    const n = normalizeRef(ref);
    const host = parseReference(n.name).host;
    const clients: Deno.HttpClient[] = [];
    try {
      const endpoints: RegistryOptions[] = [];
      for (const url of registryEndpoints(deps.registry, host)) {
        const e = await endpointOptions(deps.registry, url, auth);
        endpoints.push(e.options);
        if (e.client) clients.push(e.client);
      }
      const before = record(n.name);
      const { image } = await pullImage(backend, n.name, {
        endpoints,
        snapshotter,
        platform: deps.platform,
        labels: managed,
      });
      // The pull wrote the record itself: say so as the Images service would.
      if (!before) emitCreate(n.name);
      else if (before.target.digest !== image.target.digest) emitUpdate(n.name, image.labels);
      const { id } = await store.describe(image.target);
      const repoDigest = n.tagged ? `${n.repo}@${image.target.digest}` : n.name;
      for (const name of [id, n.name, repoDigest]) putReference(name, image.target);
      log.debug("cri: pulled image", { ref, id, name: n.name, repoDigest });
      return id;
    } catch (err) {
      const e = toBerthError(err);
      throw new BerthError(e.code, `pulling image ${JSON.stringify(n.name)}: ${e.message}`);
    } finally {
      for (const c of clients) c.close();
    }
  };

  /** The image `ref` names, or undefined (ImageStatus and RemoveImage answer empty then). */
  const find = async (ref: string) => {
    try {
      return await store.resolve(ref);
    } catch (err) {
      if (isCode(err, Code.NotFound)) return undefined;
      throw err;
    }
  };

  return {
    async pullImage(req) {
      const ref = req.image?.image ?? "";
      if (ref === "") throw invalidArgument("PullImage: image reference is empty");
      return { imageRef: await pull(ref, req.auth) };
    },

    async imageStatus(req) {
      const img = await find(req.image?.image ?? "");
      if (!img) return {};
      const info: Record<string, string> = {};
      if (req.verbose) {
        info.info = JSON.stringify({ chainID: img.chainId, imageSpec: img.config });
      }
      return { image: toCriImage(img), info };
    },

    async listImages(req) {
      const wanted = req.filter?.image?.image ?? "";
      if (wanted !== "") {
        const img = await find(wanted);
        return { images: img ? [toCriImage(img)] : [] };
      }
      return { images: [...(await store.list()).values()].map(toCriImage) };
    },

    async removeImage(req) {
      const img = await find(req.image?.image ?? "");
      if (!img) return {};
      for (const name of img.references) {
        try {
          deps.md.images.delete(ns, name);
          deps.events?.publish(
            ns,
            Topic.ImageDelete,
            ImageDeleteSchema,
            create(ImageDeleteSchema, { name }),
          );
        } catch (err) {
          if (!isCode(err, Code.NotFound)) throw err; // someone else removed it meanwhile
        }
      }
      // As containerd's last synchronous delete: the blobs and snapshots go before the answer.
      await deps.gc?.()?.collect();
      return {};
    },

    async imageFsInfo() {
      const sn = deps.snapshotters[snapshotter];
      if (!sn) throw invalidArgument(`snapshotter ${JSON.stringify(snapshotter)} is not loaded`);
      let usedBytes = 0n;
      let inodesUsed = 0n;
      for (const info of await sn.list(ns)) {
        try {
          const u = await sn.usage(ns, info.name);
          usedBytes += BigInt(u.size);
          inodesUsed += BigInt(u.inodes);
        } catch (err) {
          if (!isCode(err, Code.NotFound)) throw err; // removed while counting
        }
      }
      return {
        imageFilesystems: [{
          timestamp: BigInt(Date.now()) * 1_000_000n,
          fsId: { mountpoint: sn.backend.root },
          usedBytes: { value: usedBytes },
          inodesUsed: { value: inodesUsed },
        }],
      };
    },
  };
}
