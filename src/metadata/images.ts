/**
 * Image records: a name pointing at a target descriptor in the content store.
 *
 * @module
 */

import { alreadyExists, invalidArgument } from "../errdefs/mod.ts";
import { adaptFields } from "../filters/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import { parseDigest } from "../content/mod.ts";
import { applyMapPath, jsonToLabels, KeyedTable, labeledFields, labelsToJson, now } from "./db.ts";
import type { LabeledRow, MetadataDB } from "./db.ts";

/** An OCI content descriptor (the fields berth stores). */
export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

/** An image: a name and the manifest (or index) it points at. */
export interface Image {
  name: string;
  target: Descriptor;
  labels: Record<string, string>;
  createdAt: Date;
  updatedAt: Date;
}

/** What {@link ImageStore.create} takes. */
export type NewImage = Pick<Image, "name" | "target"> & { labels?: Record<string, string> };

interface Row extends LabeledRow {
  name: string;
  media_type: string;
  digest: string;
  size: number;
  annotations: string;
}

function toImage(r: Row): Image {
  const annotations = jsonToLabels(r.annotations);
  return {
    name: r.name,
    target: {
      mediaType: r.media_type,
      digest: r.digest,
      size: r.size,
      ...(Object.keys(annotations).length > 0 ? { annotations } : {}),
    },
    ...labeledFields(r),
  };
}

function validate(name: string, target: Descriptor, labels: Record<string, string>): void {
  if (!name) throw invalidArgument("image name must not be empty");
  validateLabels(labels);
  if (!target) throw invalidArgument("image target must be set");
  parseDigest(target.digest);
  if (!(target.size > 0)) throw invalidArgument("image target size must be greater than zero");
  if (!target.mediaType) throw invalidArgument("image target media type must be set");
}

/** The filter adaptor of images: name, target.digest, target.mediatype, labels.*, annotations.*. */
export function adaptImage(i: Image) {
  return adaptFields(
    { name: i.name, "target.digest": i.target.digest, "target.mediatype": i.target.mediaType },
    { labels: i.labels, annotations: i.target.annotations ?? {} },
  );
}

/** Image records per namespace. */
export class ImageStore {
  private readonly rows: KeyedTable<Row, Image>;

  constructor(private readonly m: MetadataDB) {
    this.rows = new KeyedTable(m, {
      table: "images",
      key: "name",
      describe: (k) => `image ${JSON.stringify(k)}`,
      to: toImage,
      adapt: adaptImage,
    });
  }

  /** Records a new image; AlreadyExists if the name is taken. */
  create(namespace: string, image: NewImage): Image {
    const labels = image.labels ?? {};
    validate(image.name, image.target, labels);
    return this.m.tx(() => {
      this.m.ensureNamespace(namespace);
      if (
        this.m.get("SELECT 1 FROM images WHERE namespace = ? AND name = ?", namespace, image.name)
      ) {
        throw alreadyExists(`image ${JSON.stringify(image.name)}`);
      }
      const t = now();
      this.m.run(
        `INSERT INTO images (namespace, name, media_type, digest, size, annotations, labels, created, updated)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        namespace,
        image.name,
        image.target.mediaType,
        image.target.digest,
        image.target.size,
        labelsToJson(image.target.annotations),
        labelsToJson(labels),
        t,
        t,
      );
      this.m.markMutation(false);
      return this.get(namespace, image.name);
    });
  }

  /** The image `name`; NotFound if absent. */
  get(namespace: string, name: string): Image {
    return this.rows.get(namespace, name);
  }

  /** Images of `namespace` passing `filters`, by name. */
  list(namespace: string, filters?: readonly string[]): Image[] {
    return this.rows.list(namespace, filters);
  }

  /**
   * Updates with field paths "labels", "labels.<k>", "target",
   * "annotations", "annotations.<k>"; none replaces labels and target.
   */
  update(
    namespace: string,
    image: Partial<Image> & { name: string },
    fieldpaths: readonly string[] = [],
  ): Image {
    if (!image.name) throw invalidArgument("image name is required for update");
    return this.m.tx(() => {
      const cur = this.get(namespace, image.name);
      let labels = cur.labels;
      let target: Descriptor = {
        ...cur.target,
        annotations: { ...(cur.target.annotations ?? {}) },
      };
      if (fieldpaths.length === 0) {
        labels = { ...(image.labels ?? {}) };
        target = image.target as Descriptor;
      }
      for (const p of fieldpaths) {
        const l = applyMapPath("labels", p, labels, image.labels);
        if (l) {
          labels = l;
          continue;
        }
        const a = applyMapPath(
          "annotations",
          p,
          target.annotations ?? {},
          image.target?.annotations,
        );
        if (a) {
          target = { ...target, annotations: a };
          continue;
        }
        if (p === "target") {
          target = image.target as Descriptor;
          continue;
        }
        throw invalidArgument(
          `cannot update ${JSON.stringify(p)} field on image ${JSON.stringify(image.name)}`,
        );
      }
      validate(image.name, target, labels);
      this.m.run(
        `UPDATE images SET media_type = ?, digest = ?, size = ?, annotations = ?, labels = ?, updated = ?
         WHERE namespace = ? AND name = ?`,
        target.mediaType,
        target.digest,
        target.size,
        labelsToJson(target.annotations),
        labelsToJson(labels),
        now(),
        namespace,
        image.name,
      );
      // A new target may orphan the old one's content.
      this.m.markMutation(target.digest !== cur.target.digest);
      return this.get(namespace, image.name);
    });
  }

  /** Deletes the image record; NotFound if absent. Its content goes at the next collection. */
  delete(namespace: string, name: string): void {
    this.rows.delete(namespace, name);
  }
}
