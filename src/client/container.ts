/**
 * Creating a container the way `ctr run` / `ctr containers create` do: the
 * spec from defaults + image config + flags, a fresh snapshot on top of the
 * image's unpacked rootfs, and the container record. Shared by `run` and
 * `containers create`.
 * @module
 */

import { DEFAULT_SNAPSHOTTER } from "../defaults/mod.ts";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "../errdefs/mod.ts";
import {
  type Container,
  Containers,
} from "../gen/containerd/services/containers/v1/containers_pb.ts";
import { Snapshots } from "../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { OptionsSchema } from "../gen/containerd/runc/v1/options_pb.ts";
import {
  applyOptions,
  capsFromMask,
  defaultSpec,
  encodeSpec,
  parseHookFlag,
  parseMountFlag,
  type Spec,
  SPEC_TYPE_URL,
  withImageConfig,
} from "../oci/mod.ts";
import { type FlagSpec, type FlagValues, labelArgs, list, str, usageError } from "./cli.ts";
import type { Connection } from "./connection.ts";
import { withLease } from "./lease.ts";
import { HintedError, hintNotFound } from "./errors.ts";
import { getImage, imageConfig } from "./image.ts";

/** berth's default runtime: its own shim (ctr's is io.containerd.runc.v2). */
export const DEFAULT_RUNTIME = "io.containerd.berth.v2";

/** Flags shared by `run` and `containers create` (ctr's ContainerFlags and snapshotter flags). */
export const CONTAINER_FLAGS: Record<string, FlagSpec> = {
  snapshotter: { type: "string", help: "snapshotter name", default: DEFAULT_SNAPSHOTTER },
  "snapshotter-label": {
    type: "string",
    multiple: true,
    help: "labels added to the new snapshot (KEY=VALUE)",
  },
  config: { type: "string", short: "c", help: "path to a runtime-specific spec config file" },
  cwd: { type: "string", help: "working directory of the process" },
  env: { type: "string", multiple: true, help: "environment variable (KEY=VALUE)" },
  "env-file": { type: "string", help: "file of environment variables, one KEY=VALUE a line" },
  label: { type: "string", multiple: true, help: "container label (KEY=VALUE)" },
  annotation: { type: "string", multiple: true, help: "OCI annotation (KEY=VALUE)" },
  mount: {
    type: "string",
    multiple: true,
    help: "mount, e.g. type=bind,src=/a,dst=/b,options=rbind:ro",
  },
  "net-host": { type: "boolean", help: "use the host's network namespace" },
  privileged: { type: "boolean", help: "all capabilities, devices and unmasked paths" },
  "read-only": { type: "boolean", help: "mount the rootfs read-only" },
  runtime: { type: "string", help: "runtime name", default: DEFAULT_RUNTIME },
  "runc-binary": { type: "string", help: "the runc binary the shim runs" },
  tty: { type: "boolean", short: "t", help: "allocate a TTY for the container" },
  "with-ns": { type: "string", multiple: true, help: "join a namespace (TYPE:PATH)" },
  "pid-file": { type: "string", help: "file to write the task's pid to" },
  "memory-limit": { type: "string", help: "memory limit in bytes" },
  "cap-add": { type: "string", multiple: true, help: "add a capability, e.g. CAP_SYS_ADMIN" },
  "cap-drop": { type: "string", multiple: true, help: "drop a capability" },
  cpus: { type: "string", help: "CPUs the container may use, e.g. 1.5" },
  "cpu-shares": { type: "string", help: "CPU shares (relative weight)" },
  user: { type: "string", short: "u", help: "user of the process: UID[:GID]" },
  rootfs: { type: "boolean", help: "the first argument is a rootfs directory, not an image" },
  hostname: { type: "string", help: "container hostname" },
  hook: {
    type: "string",
    multiple: true,
    help:
      'OCI hook: STAGE=PATH[:ARG...] or STAGE=["PATH","ARG",...]; STAGE is prestart, createRuntime, createContainer, startContainer, poststart or poststop',
  },
};

function numberFlag(flags: FlagValues, name: string): number | undefined {
  const v = str(flags, name);
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) {
    throw usageError(`--${name} "${v}": expected a non-negative number`);
  }
  return n;
}

async function envFromFile(path: string | undefined): Promise<string[]> {
  if (path === undefined) return [];
  const text = await Deno.readTextFile(path).catch((err) => {
    throw usageError(`--env-file ${path}: ${(err as Error).message}`);
  });
  return text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#"));
}

/** The capabilities this client may hand on (its bounding set), when /proc says. */
async function hostCaps(): Promise<string[] | undefined> {
  const status = await Deno.readTextFile("/proc/self/status").catch(() => "");
  const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
  return m ? capsFromMask(m[1]) : undefined;
}

async function hostFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const f of ["/etc/resolv.conf", "/etc/hosts"]) {
    try {
      await Deno.stat(f);
      out.push(f);
    } catch { /* not on this host */ }
  }
  return out;
}

/** Builds the spec for a new container from flags (and the image config, when there is one). */
export async function buildSpec(
  namespace: string,
  id: string,
  flags: FlagValues,
  imageProcess: Parameters<typeof withImageConfig>[1] | undefined,
  args: string[],
): Promise<Spec> {
  const hooks = list(flags, "hook").map(parseHookFlag);
  const specFile = str(flags, "config");
  if (specFile !== undefined) {
    // The file is the spec as given; --hook adds to its hooks.
    const given = JSON.parse(await Deno.readTextFile(specFile)) as Spec;
    applyOptions(given, { hooks });
    return given;
  }
  const spec = defaultSpec(namespace, id);
  if (imageProcess) withImageConfig(spec, imageProcess, args);
  else spec.process.args = [...args];
  applyOptions(spec, {
    tty: flags.tty === true,
    env: [...await envFromFile(str(flags, "env-file")), ...list(flags, "env")],
    cwd: str(flags, "cwd"),
    user: str(flags, "user"),
    mounts: list(flags, "mount").map(parseMountFlag),
    annotations: labelArgs(list(flags, "annotation")),
    netHost: flags["net-host"] === true,
    hostFiles: flags["net-host"] === true ? await hostFiles() : [],
    privileged: flags.privileged === true,
    readOnly: flags["read-only"] === true,
    memoryLimit: numberFlag(flags, "memory-limit"),
    cpus: numberFlag(flags, "cpus"),
    cpuShares: numberFlag(flags, "cpu-shares"),
    capAdd: list(flags, "cap-add"),
    capDrop: list(flags, "cap-drop"),
    withNs: list(flags, "with-ns"),
    hostname: str(flags, "hostname"),
    hooks,
    hostCaps: await hostCaps(),
  });
  if (spec.process.args.length === 0) {
    throw usageError(
      "no command to run: the image has no entrypoint or cmd; name one after the container id",
    );
  }
  return spec;
}

/**
 * Creates container `id` from `ref` (an image, or a rootfs directory with
 * --rootfs) and returns its record. On failure nothing is left behind.
 */
export async function createContainer(
  conn: Connection,
  flags: FlagValues,
  ref: string,
  id: string,
  args: string[],
): Promise<Container> {
  const snapshotter = str(flags, "snapshotter") ?? DEFAULT_SNAPSHOTTER;
  const runtime = str(flags, "runtime") ?? DEFAULT_RUNTIME;
  const runcBinary = str(flags, "runc-binary");
  const options = runcBinary
    ? {
      typeUrl: "containerd.runc.v1.Options",
      value: toBinary(OptionsSchema, create(OptionsSchema, { binaryName: runcBinary })),
    }
    : undefined;
  const labels = labelArgs(list(flags, "label"));
  // Say "container exists" rather than the snapshot conflict it would cause.
  // The image is looked up meanwhile; its error, if any, comes second.
  const existing = conn.service(Containers).get({ id }).then(() => true, () => false);
  const found = flags.rootfs === true ? undefined : getImage(conn, ref);
  found?.catch(() => {});
  if (await existing) {
    throw new HintedError(
      Code.AlreadyExists,
      `container "${id}" already exists`,
      `remove it with: berth containers rm ${id}, or pick another id`,
    );
  }
  let spec: Spec;
  let imageName = "";
  let chainId = "";
  if (flags.rootfs === true) {
    const path = ref.startsWith("/") ? ref : `${Deno.cwd()}/${ref}`;
    spec = await buildSpec(conn.namespace, id, flags, undefined, args);
    spec.root.path = path;
  } else {
    const image = await found!;
    imageName = image.name;
    const cfg = await imageConfig(conn, image);
    chainId = cfg.chainId;
    spec = await buildSpec(conn.namespace, id, flags, cfg.config.config ?? {}, args);
  }
  const snapshotKey = flags.rootfs === true ? "" : id;
  // The snapshot is unreferenced between Prepare and the container record:
  // the lease holds it there.
  return await withLease(conn, async (lease) => {
    if (snapshotKey) {
      try {
        await conn.service(Snapshots, { lease }).prepare({
          snapshotter,
          key: snapshotKey,
          parent: chainId,
          labels: labelArgs(list(flags, "snapshotter-label")),
        });
      } catch (err) {
        if ((err as { code?: Code }).code === Code.NotFound) {
          throw new HintedError(
            Code.NotFound,
            `image "${ref}" is not unpacked in snapshotter ${snapshotter} (no snapshot ${
              chainId || "for an empty rootfs"
            })`,
            `unpack it first (berth images import unpacks what it imports), or pick its snapshotter with --snapshotter`,
          );
        }
        if ((err as { code?: Code }).code === Code.AlreadyExists) {
          throw new HintedError(
            Code.AlreadyExists,
            `snapshot "${id}" already exists in ${snapshotter}`,
            `remove it with: berth snapshots --snapshotter ${snapshotter} rm ${id}, or pick another container id`,
          );
        }
        throw err;
      }
    }
    try {
      const { container } = await conn.service(Containers, { lease }).create({
        container: {
          id,
          labels,
          image: imageName,
          runtime: { name: runtime, options },
          spec: { typeUrl: SPEC_TYPE_URL, value: encodeSpec(spec) },
          snapshotter: snapshotKey ? snapshotter : "",
          snapshotKey,
        },
      });
      if (!container) {
        throw new HintedError(Code.Internal, `daemon returned no record for container ${id}`, "");
      }
      return container;
    } catch (err) {
      if (snapshotKey) {
        await conn.service(Snapshots).remove({ snapshotter, key: snapshotKey }).catch(() => {});
      }
      if ((err as { code?: Code }).code === Code.AlreadyExists) {
        throw new HintedError(
          Code.AlreadyExists,
          `container "${id}" already exists`,
          `remove it with: berth containers rm ${id}, or pick another id`,
        );
      }
      throw err;
    }
  });
}

/** Loads a container record, with a hint when there is none. */
export async function getContainer(conn: Connection, id: string): Promise<Container> {
  try {
    const { container } = await conn.service(Containers).get({ id });
    if (!container) throw new HintedError(Code.NotFound, `container "${id}": not found`, "");
    return container;
  } catch (err) {
    throw hintNotFound(err, `list containers with: berth -n ${conn.namespace} containers ls`);
  }
}

/** The spec stored in a container record, parsed. */
export function specOf(c: Container): Spec | undefined {
  if (!c.spec || c.spec.value.length === 0) return undefined;
  return JSON.parse(new TextDecoder().decode(c.spec.value)) as Spec;
}
