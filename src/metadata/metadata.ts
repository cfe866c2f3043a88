/**
 * The metadata database opened with every store on it.
 *
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
