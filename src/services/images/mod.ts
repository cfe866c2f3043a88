/**
 * The Images service over the metadata store: image names and their target
 * descriptors, with containerd's image events. Deleting an image leaves its
 * blobs to the garbage collector, which the delete schedules (or, with
 * `sync`, runs before answering).
 * @module
 */

import { create } from "@bufbuild/protobuf";
import { invalidArgument } from "../../errdefs/mod.ts";
import { type Exchange, Topic } from "../../events/mod.ts";
import {
  ImageCreateSchema,
  ImageDeleteSchema,
  ImageUpdateSchema,
} from "../../gen/containerd/events/image_pb.ts";
import {
  type Image as ImageProto,
  Images,
  ImageSchema,
} from "../../gen/containerd/services/images/v1/images_pb.ts";
import type { Descriptor as DescriptorProto } from "../../gen/containerd/types/descriptor_pb.ts";
import type { Descriptor, Image, Metadata } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { type Collector, maskPaths, type RPCService, rpcService, toTimestamp } from "../mod.ts";

/** A stored descriptor as containerd's Descriptor message init. */
export function descriptorToProto(d: Descriptor) {
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: BigInt(d.size),
    annotations: d.annotations ?? {},
  };
}

/** A Descriptor message as the store's descriptor (undefined when absent). */
export function descriptorFromProto(d: DescriptorProto | undefined): Descriptor | undefined {
  if (d === undefined) return undefined;
  return {
    mediaType: d.mediaType,
    digest: d.digest,
    size: Number(d.size),
    annotations: d.annotations,
  };
}

/** A stored image as containerd's Image message. */
export function imageToProto(i: Image): ImageProto {
  return create(ImageSchema, {
    name: i.name,
    labels: i.labels,
    target: descriptorToProto(i.target),
    createdAt: toTimestamp(i.createdAt),
    updatedAt: toTimestamp(i.updatedAt),
  });
}

/** The Images service on `md`, publishing to `events`; `gc()` is the collector when one is loaded. */
export function imagesService(
  md: Metadata,
  events: Exchange,
  gc: () => Collector | undefined,
): RPCService {
  return rpcService(Images, {
    get: (req, ctx) => ({ image: imageToProto(md.images.get(namespaceRequired(ctx), req.name)) }),
    list: (req, ctx) => ({
      images: md.images.list(namespaceRequired(ctx), req.filters).map(imageToProto),
    }),
    create: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      if (req.image === undefined || req.image.name === "") {
        throw invalidArgument("Image.Name required");
      }
      const target = descriptorFromProto(req.image.target);
      if (target === undefined) throw invalidArgument("image target must be set");
      const image = md.images.create(ns, {
        name: req.image.name,
        target,
        labels: req.image.labels,
      });
      events.publish(
        ns,
        Topic.ImageCreate,
        ImageCreateSchema,
        { name: image.name, labels: image.labels },
      );
      return { image: imageToProto(image) };
    },
    update: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      if (req.image === undefined || req.image.name === "") {
        throw invalidArgument("Image.Name required");
      }
      const image = md.images.update(
        ns,
        {
          name: req.image.name,
          labels: req.image.labels,
          target: descriptorFromProto(req.image.target),
        },
        maskPaths(req.updateMask),
      );
      events.publish(
        ns,
        Topic.ImageUpdate,
        ImageUpdateSchema,
        { name: image.name, labels: image.labels },
      );
      return { image: imageToProto(image) };
    },
    delete: async (req, ctx) => {
      const ns = namespaceRequired(ctx);
      md.images.delete(ns, req.name);
      events.publish(
        ns,
        Topic.ImageDelete,
        ImageDeleteSchema,
        { name: req.name },
      );
      // The collector already heard of the delete and will run shortly; a
      // synchronous delete waits for a collection instead.
      if (req.sync) await gc()?.collect();
      return {};
    },
  });
}

/** The plugin serving it: io.containerd.grpc.v1.images. */
export const imagesPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "images",
  requires: ["io.containerd.metadata.v1", "io.containerd.event.v1"],
  init: (ctx) =>
    imagesService(
      ctx.first<Metadata>("io.containerd.metadata.v1"),
      ctx.first<Exchange>("io.containerd.event.v1"),
      () => ctx.all<Collector>("io.containerd.gc.v1").values().next().value,
    ),
};
