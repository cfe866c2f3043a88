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

import { ContainerStore } from "./containers.ts";
import { ContentMetadataStore } from "./content.ts";
import { MetadataDB } from "./db.ts";
import { ImageStore } from "./images.ts";
import { LeaseStore } from "./leases.ts";
import { NamespaceStore } from "./namespaces.ts";
import { NamespacedSnapshotter } from "./snapshotter.ts";
import { SnapshotRecordStore } from "./snapshots.ts";
import type { Snapshotter } from "../snapshots/mod.ts";

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

/** The metadata database with every store on it. */
export interface Metadata {
  readonly db: MetadataDB;
  readonly namespaces: NamespaceStore;
  readonly containers: ContainerStore;
  readonly images: ImageStore;
  readonly leases: LeaseStore;
  readonly content: ContentMetadataStore;
  readonly snapshots: SnapshotRecordStore;
  /** The namespaced view of backend snapshotter `backend`. */
  snapshotter(backend: Snapshotter): NamespacedSnapshotter;
  /** Closes the database. */
  close(): void;
}

/** Opens the metadata database under berth's state root, migrating it as needed. */
export async function openMetadata(stateRoot: string): Promise<Metadata> {
  const db = await MetadataDB.open(stateRoot);
  const snapshots = new SnapshotRecordStore(db);
  return {
    db,
    namespaces: new NamespaceStore(db),
    containers: new ContainerStore(db),
    images: new ImageStore(db),
    leases: new LeaseStore(db),
    content: new ContentMetadataStore(db),
    snapshots,
    snapshotter: (backend) => new NamespacedSnapshotter(db, snapshots, backend),
    close: () => db.close(),
  };
}
