/**
 * berth's metadata: namespaces, containers, images, leases, content
 * ownership and labels, and per-namespace snapshot names, in one SQLite
 * database at `<state>/io.containerd.metadata.v1.sqlite/meta.db` (WAL,
 * foreign keys, versioned migrations, one transaction per change).
 *
 * Stores take plain TypeScript objects and are synchronous (node:sqlite
 * is); services convert to and from protobuf messages. Lists filter with
 * src/filters; updates take containerd's field paths ("labels.x", "image").
 *
 * @example
 * ```ts
 * import { openMetadata } from "./mod.ts";
 * const md = await openMetadata("/var/lib/berth");
 * md.images.create("default", {
 *   name: "docker.io/library/busybox:latest",
 *   target: { mediaType: "application/vnd.oci.image.index.v1+json", digest: "sha256:...", size: 1234 },
 * });
 * md.close();
 * ```
 * @module
 */

export { AsyncLock, METADATA_PLUGIN_DIR, MetadataDB, type Migration, MIGRATIONS } from "./db.ts";
export { type Namespace, NamespaceStore } from "./namespaces.ts";
export {
  adaptContainer,
  type AnyValue,
  type Container,
  type ContainerRuntime,
  ContainerStore,
  type NewContainer,
} from "./containers.ts";
export { adaptImage, type Descriptor, type Image, ImageStore, type NewImage } from "./images.ts";
export { adaptLease, type Lease, type LeaseResource, LeaseStore } from "./leases.ts";
export {
  adaptContent,
  ContentMetadataStore,
  type ContentRecord,
  type IngestRecord,
  type LeaseOption,
} from "./content.ts";
export { adaptSnapshotRecord, type SnapshotRecord, SnapshotRecordStore } from "./snapshots.ts";
export { type NamespacedSnapshotOptions, NamespacedSnapshotter } from "./snapshotter.ts";
export {
  NamespacedContent,
  NamespacedWriter,
  type NamespacedWriterOptions,
} from "./namespaced_content.ts";
export { type Metadata, openMetadata } from "./metadata.ts";
