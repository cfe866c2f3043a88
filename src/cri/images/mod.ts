/**
 * The CRI ImageService (Kubernetes runtime.v1) on berth's own image store:
 * pulls normalized as the kubelet and containerd do (`busybox` ->
 * `docker.io/library/busybox:latest`), through the registry mirrors and
 * per-host TLS and credentials of the CRI section's `registry` table,
 * unpacked into the configured snapshotter; images named as containerd's
 * CRI names them (the reference, `repo@digest` and the id, each labelled
 * `io.cri-containerd.image=managed`) in namespace k8s.io.
 *
 * @example
 * ```ts
 * import { imageService } from "./mod.ts";
 * const impl = imageService({ md, content, snapshotters, registry: registryConfig(config) });
 * server.register(ImageService, impl);
 * ```
 * @module
 */

export {
  CRI_NAMESPACE,
  imageService,
  type ImageServiceDeps,
  imageUser,
  LABEL_CRI_IMAGE,
  LABEL_CRI_IMAGE_MANAGED,
  splitReferences,
  toCriImage,
} from "./service.ts";
export { type CriImage, CriImageStore, normalizeRef } from "./store.ts";
export {
  type AuthInput,
  credentialsFor,
  endpointOptions,
  isLocalhost,
  registryEndpoints,
} from "./registry.ts";
