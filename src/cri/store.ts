/**
 * What the CRI plugin remembers of pods and containers. Each is a
 * container record of the k8s.io namespace (so `berth -n k8s.io containers
 * ls` shows them) carrying the CRI request as a JSON extension; a
 * container's run status (started, finished, exit code) is a small file
 * under the plugin's root. A restarted daemon rebuilds this from both.
 * @module
 */

import { fromJson, type JsonValue, toJson } from "@bufbuild/protobuf";
import {
  type ContainerConfig,
  ContainerConfigSchema,
  type PodSandboxConfig,
  PodSandboxConfigSchema,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { alreadyExists, invalidArgument, notFound } from "../errdefs/mod.ts";
import type { AnyValue } from "../metadata/mod.ts";

/** Extension keys on the container records (containerd's names). */
export const SANDBOX_EXTENSION = "io.cri-containerd.sandbox.metadata";
/** See {@link SANDBOX_EXTENSION}. */
export const CONTAINER_EXTENSION = "io.cri-containerd.container.metadata";
const JSON_TYPE = "berth.dev/cri/metadata+json";

/** A pod sandbox. */
export interface Sandbox {
  id: string;
  name: string;
  config: PodSandboxConfig;
  runtimeHandler: string;
  /** The pinned network namespace ("" for host network). */
  netnsPath: string;
  /** Nanoseconds since the epoch. */
  createdAt: bigint;
  /** The pause process (0 when unknown). */
  pid: number;
  /** Whether its pause task runs (kept current by the exit watcher). */
  ready: boolean;
  /** The pod's IP addresses (empty without CNI). */
  ips: string[];
}

/** A container's run status. */
export interface RunStatus {
  pid: number;
  /** Nanoseconds since the epoch, 0 when not (yet). */
  startedAt: bigint;
  finishedAt: bigint;
  exitCode: number;
  reason: string;
  message: string;
}

/** A container of a pod. */
export interface CriContainer {
  id: string;
  name: string;
  sandboxId: string;
  config: ContainerConfig;
  /** The image's id (config digest) and the name it was asked by. */
  imageId: string;
  imageName: string;
  logPath: string;
  createdAt: bigint;
  status: RunStatus;
}

/** Now, in nanoseconds since the epoch. */
export function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/** The extension holding a sandbox's persistent part. */
export function sandboxExtension(s: Sandbox): AnyValue {
  const doc = {
    id: s.id,
    name: s.name,
    config: toJson(PodSandboxConfigSchema, s.config),
    runtimeHandler: s.runtimeHandler,
    netnsPath: s.netnsPath,
    createdAt: String(s.createdAt),
    ips: s.ips,
  };
  return { typeUrl: JSON_TYPE, value: new TextEncoder().encode(JSON.stringify(doc)) };
}

/** A sandbox back from its extension (not ready until its task is found). */
export function sandboxFromExtension(ext: AnyValue): Sandbox {
  const doc = JSON.parse(new TextDecoder().decode(ext.value));
  return {
    id: doc.id,
    name: doc.name,
    config: fromJson(PodSandboxConfigSchema, doc.config as JsonValue),
    runtimeHandler: doc.runtimeHandler ?? "",
    netnsPath: doc.netnsPath ?? "",
    createdAt: BigInt(doc.createdAt ?? 0),
    pid: 0,
    ready: false,
    ips: doc.ips ?? [],
  };
}

/** The extension holding a container's persistent part (its status lives in a file). */
export function containerExtension(c: CriContainer): AnyValue {
  const doc = {
    id: c.id,
    name: c.name,
    sandboxId: c.sandboxId,
    config: toJson(ContainerConfigSchema, c.config),
    imageId: c.imageId,
    imageName: c.imageName,
    logPath: c.logPath,
    createdAt: String(c.createdAt),
  };
  return { typeUrl: JSON_TYPE, value: new TextEncoder().encode(JSON.stringify(doc)) };
}

/** A container back from its extension, with `status`. */
export function containerFromExtension(ext: AnyValue, status: RunStatus): CriContainer {
  const doc = JSON.parse(new TextDecoder().decode(ext.value));
  return {
    id: doc.id,
    name: doc.name,
    sandboxId: doc.sandboxId,
    config: fromJson(ContainerConfigSchema, doc.config as JsonValue),
    imageId: doc.imageId,
    imageName: doc.imageName,
    logPath: doc.logPath,
    createdAt: BigInt(doc.createdAt ?? 0),
    status,
  };
}

/** A fresh status: created, never started. */
export function newRunStatus(): RunStatus {
  return { pid: 0, startedAt: 0n, finishedAt: 0n, exitCode: 0, reason: "", message: "" };
}

/** The status as the file's JSON text. */
export function encodeRunStatus(s: RunStatus): string {
  return JSON.stringify({
    ...s,
    startedAt: String(s.startedAt),
    finishedAt: String(s.finishedAt),
  });
}

/** The file's JSON text as a status. */
export function decodeRunStatus(text: string): RunStatus {
  const d = JSON.parse(text);
  return {
    pid: d.pid ?? 0,
    startedAt: BigInt(d.startedAt ?? 0),
    finishedAt: BigInt(d.finishedAt ?? 0),
    exitCode: d.exitCode ?? 0,
    reason: d.reason ?? "",
    message: d.message ?? "",
  };
}

/**
 * Objects by id, with containerd's two indexes: unique names (a name is
 * reserved for one id until released) and ids found by a unique prefix.
 */
export class Index<T extends { id: string }> {
  readonly #byId = new Map<string, T>();
  readonly #names = new Map<string, string>();

  constructor(readonly kind: string) {}

  /** Reserves `name` for `id`; AlreadyExists when another id holds it. */
  reserve(name: string, id: string): void {
    const holder = this.#names.get(name);
    if (holder !== undefined && holder !== id) {
      throw alreadyExists(`name ${JSON.stringify(name)} is reserved for ${JSON.stringify(holder)}`);
    }
    this.#names.set(name, id);
  }

  /** Frees `name`. */
  release(name: string): void {
    this.#names.delete(name);
  }

  add(x: T): void {
    this.#byId.set(x.id, x);
  }

  delete(id: string): void {
    this.#byId.delete(id);
  }

  /** `idOrPrefix` in full or as a unique prefix; NotFound otherwise. */
  get(idOrPrefix: string): T {
    if (idOrPrefix === "") throw invalidArgument(`${this.kind} id is required`);
    const exact = this.#byId.get(idOrPrefix);
    if (exact) return exact;
    const hits = [...this.#byId.values()].filter((x) => x.id.startsWith(idOrPrefix));
    if (hits.length === 1) return hits[0];
    if (hits.length > 1) {
      throw invalidArgument(`${this.kind} id prefix ${JSON.stringify(idOrPrefix)} is ambiguous`);
    }
    throw notFound(`${this.kind} ${JSON.stringify(idOrPrefix)}`);
  }

  /** The object, or undefined. */
  find(idOrPrefix: string): T | undefined {
    try {
      return this.get(idOrPrefix);
    } catch {
      return undefined;
    }
  }

  all(): T[] {
    return [...this.#byId.values()];
  }
}
