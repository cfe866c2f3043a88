/**
 * Container records: what to run (spec, runtime) on what (image, snapshot).
 *
 * @module
 */

import { alreadyExists, invalidArgument } from "../errdefs/mod.ts";
import { adaptFields } from "../filters/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";
import { validateLabels } from "../labels/mod.ts";
import { applyMapPath, KeyedTable, labeledFields, labelsToJson, now } from "./db.ts";
import type { LabeledRow, MetadataDB } from "./db.ts";

/** A protobuf Any: a type URL and the message's bytes. */
export interface AnyValue {
  typeUrl: string;
  value: Uint8Array;
}

/** The runtime a container runs with. */
export interface ContainerRuntime {
  /** e.g. "io.containerd.runc.v2". */
  name: string;
  options?: AnyValue;
}

/** A container record (not a running task). */
export interface Container {
  id: string;
  labels: Record<string, string>;
  image: string;
  runtime: ContainerRuntime;
  /** The OCI runtime spec, as an Any. */
  spec: AnyValue;
  snapshotter: string;
  snapshotKey: string;
  extensions: Record<string, AnyValue>;
  /** Sandbox this container belongs to, "" for none. */
  sandbox: string;
  createdAt: Date;
  updatedAt: Date;
}

/** What {@link ContainerStore.create} takes: timestamps are set by the store. */
export type NewContainer =
  & Pick<Container, "id" | "runtime" | "spec">
  & Partial<Omit<Container, "id" | "runtime" | "spec" | "createdAt" | "updatedAt">>;

interface Row extends LabeledRow {
  id: string;
  image: string;
  runtime_name: string;
  runtime_options_type_url: string | null;
  runtime_options_value: Uint8Array | null;
  spec_type_url: string;
  spec_value: Uint8Array;
  snapshotter: string;
  snapshot_key: string;
  extensions: string;
  sandbox: string;
  created: string;
  updated: string;
}

function b64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    s += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(s);
}

function unb64(text: string): Uint8Array {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

function extensionsToJson(ext: Record<string, AnyValue>): string {
  const out: Record<string, { typeUrl: string; value: string }> = {};
  for (const [k, v] of Object.entries(ext)) out[k] = { typeUrl: v.typeUrl, value: b64(v.value) };
  return JSON.stringify(out);
}

function jsonToExtensions(text: string): Record<string, AnyValue> {
  const raw = JSON.parse(text) as Record<string, { typeUrl: string; value: string }>;
  const out: Record<string, AnyValue> = {};
  for (const [k, v] of Object.entries(raw)) out[k] = { typeUrl: v.typeUrl, value: unb64(v.value) };
  return out;
}

function toContainer(r: Row): Container {
  return {
    id: r.id,
    image: r.image,
    runtime: {
      name: r.runtime_name,
      ...(r.runtime_options_type_url !== null
        ? {
          options: {
            typeUrl: r.runtime_options_type_url,
            value: new Uint8Array(r.runtime_options_value ?? []),
          },
        }
        : {}),
    },
    spec: { typeUrl: r.spec_type_url, value: new Uint8Array(r.spec_value) },
    snapshotter: r.snapshotter,
    snapshotKey: r.snapshot_key,
    extensions: jsonToExtensions(r.extensions),
    sandbox: r.sandbox,
    ...labeledFields(r),
  };
}

function validate(c: Container): void {
  validateIdentifier(c.id, "container id");
  for (const k of Object.keys(c.extensions)) {
    if (!k) throw invalidArgument("container extension keys must not be empty");
  }
  validateLabels(c.labels);
  if (!c.runtime?.name) throw invalidArgument("container runtime name must be set");
  if (!c.spec || !c.spec.typeUrl) throw invalidArgument("container spec must be set");
  if (c.snapshotKey && !c.snapshotter) {
    throw invalidArgument("container snapshotter must be set when a snapshot key is");
  }
}

/** The filter adaptor of containers: id, image, runtime.name, labels.*. */
export function adaptContainer(c: Container) {
  return adaptFields({ id: c.id, image: c.image, "runtime.name": c.runtime.name }, {
    labels: c.labels,
  });
}

/** Container records per namespace. */
export class ContainerStore {
  private readonly rows: KeyedTable<Row, Container>;

  constructor(private readonly m: MetadataDB) {
    this.rows = new KeyedTable(m, {
      table: "containers",
      key: "id",
      describe: (k) => `container ${JSON.stringify(k)}`,
      to: toContainer,
      adapt: adaptContainer,
    });
  }

  /** Records a new container; AlreadyExists when the id is taken. */
  create(namespace: string, init: NewContainer): Container {
    const t = new Date();
    const c: Container = {
      labels: {},
      image: "",
      snapshotter: "",
      snapshotKey: "",
      extensions: {},
      sandbox: "",
      ...init,
      createdAt: t,
      updatedAt: t,
    };
    validate(c);
    return this.m.tx(() => {
      this.m.ensureNamespace(namespace);
      if (this.m.get("SELECT 1 FROM containers WHERE namespace = ? AND id = ?", namespace, c.id)) {
        throw alreadyExists(`container ${JSON.stringify(c.id)}`);
      }
      this.write(namespace, c, true);
      this.m.markMutation(false);
      return this.get(namespace, c.id);
    });
  }

  private write(namespace: string, c: Container, insert: boolean): void {
    const cols = [
      labelsToJson(c.labels),
      c.image,
      c.runtime.name,
      c.runtime.options?.typeUrl ?? null,
      c.runtime.options?.value ?? null,
      c.spec.typeUrl,
      c.spec.value,
      c.snapshotter,
      c.snapshotKey,
      extensionsToJson(c.extensions),
      c.sandbox,
      c.updatedAt.toISOString(),
    ] as const;
    if (insert) {
      this.m.run(
        `INSERT INTO containers (labels, image, runtime_name, runtime_options_type_url, runtime_options_value,
          spec_type_url, spec_value, snapshotter, snapshot_key, extensions, sandbox, updated, created, namespace, id)
          VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ...cols,
        c.createdAt.toISOString(),
        namespace,
        c.id,
      );
    } else {
      this.m.run(
        `UPDATE containers SET labels = ?, image = ?, runtime_name = ?, runtime_options_type_url = ?,
          runtime_options_value = ?, spec_type_url = ?, spec_value = ?, snapshotter = ?, snapshot_key = ?,
          extensions = ?, sandbox = ?, updated = ? WHERE namespace = ? AND id = ?`,
        ...cols,
        namespace,
        c.id,
      );
    }
  }

  /** The container `id`; NotFound if absent. */
  get(namespace: string, id: string): Container {
    return this.rows.get(namespace, id);
  }

  /** Containers of `namespace` passing `filters` (any of them), by id. */
  list(namespace: string, filters?: readonly string[]): Container[] {
    return this.rows.list(namespace, filters);
  }

  /**
   * Updates with containerd's field paths: "labels", "labels.<k>", "spec",
   * "extensions", "extensions.<k>", "image", "snapshotkey". Without paths
   * those fields are replaced, and a changed snapshotter or runtime name is
   * InvalidArgument (they are immutable).
   */
  update(
    namespace: string,
    c: Partial<Container> & { id: string },
    fieldpaths: readonly string[] = [],
  ): Container {
    if (!c.id) throw invalidArgument("container id is required for update");
    return this.m.tx(() => {
      const cur = this.get(namespace, c.id);
      let paths = fieldpaths;
      if (paths.length === 0) {
        paths = ["labels", "spec", "extensions", "image", "snapshotkey"];
        if ((c.snapshotter ?? "") !== cur.snapshotter) {
          throw invalidArgument("container snapshotter is immutable");
        }
        if ((c.runtime?.name ?? "") !== cur.runtime.name) {
          throw invalidArgument("container runtime name is immutable");
        }
      }
      const next: Container = {
        ...cur,
        labels: { ...cur.labels },
        extensions: { ...cur.extensions },
      };
      for (const p of paths) {
        const labels = applyMapPath("labels", p, next.labels, c.labels);
        if (labels) {
          next.labels = labels;
          continue;
        }
        if (p.startsWith("extensions.")) {
          const key = p.slice("extensions.".length);
          const v = c.extensions?.[key];
          if (v) next.extensions[key] = v;
          else delete next.extensions[key];
          continue;
        }
        switch (p) {
          case "spec":
            next.spec = c.spec as AnyValue;
            break;
          case "extensions":
            next.extensions = { ...(c.extensions ?? {}) };
            break;
          case "image":
            next.image = c.image ?? "";
            break;
          case "snapshotkey":
            next.snapshotKey = c.snapshotKey ?? "";
            break;
          default:
            throw invalidArgument(
              `cannot update ${JSON.stringify(p)} field on container ${JSON.stringify(c.id)}`,
            );
        }
      }
      validate(next);
      next.updatedAt = new Date(now());
      this.write(namespace, next, false);
      this.m.markMutation(false);
      return this.get(namespace, c.id);
    });
  }

  /** Deletes the container record; NotFound if absent. */
  delete(namespace: string, id: string): void {
    this.rows.delete(namespace, id);
  }
}
