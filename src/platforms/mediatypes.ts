/**
 * The media types berth reads and writes, OCI and Docker alike.
 *
 * @module
 */

/** OCI image index. */
export const OCI_INDEX = "application/vnd.oci.image.index.v1+json";
/** OCI image manifest. */
export const OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json";
/** OCI image config. */
export const OCI_CONFIG = "application/vnd.oci.image.config.v1+json";
/** OCI layer, uncompressed. */
export const OCI_LAYER = "application/vnd.oci.image.layer.v1.tar";
/** OCI layer, gzip. */
export const OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip";
/** OCI layer, zstd. */
export const OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd";
/** Docker manifest list (its index). */
export const DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json";
/** Docker schema 2 manifest. */
export const DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json";
/** Docker image config. */
export const DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json";
/** Docker layer, gzip. */
export const DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip";
/** Docker layer, uncompressed (what `docker save` archives hold). */
export const DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar";

/** True for an index or Docker manifest list. */
export function isIndex(mediaType: string): boolean {
  return mediaType === OCI_INDEX || mediaType === DOCKER_MANIFEST_LIST;
}

/** True for an OCI or Docker schema 2 manifest. */
export function isManifest(mediaType: string): boolean {
  return mediaType === OCI_MANIFEST || mediaType === DOCKER_MANIFEST;
}

/**
 * The media type of a JSON document that names none (OCI allows omitting
 * `mediaType`): an index has `manifests`, a manifest has `config`.
 */
export function sniffMediaType(
  doc: { mediaType?: string; manifests?: unknown; config?: unknown },
): string {
  if (doc.mediaType) return doc.mediaType;
  if (Array.isArray(doc.manifests)) return OCI_INDEX;
  if (doc.config !== undefined) return OCI_MANIFEST;
  return "";
}
