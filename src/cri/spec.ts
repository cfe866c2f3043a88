/**
 * OCI specs for a pod's sandbox container and for its containers, from
 * the CRI configs and the image config, in the order containerd's CRI
 * builds them: defaults, image config, the request's process settings,
 * namespaces shared with the sandbox, mounts, devices, resources and the
 * security context, then the `io.kubernetes.cri.*` annotations.
 * @module
 */

import type {
  ContainerConfig,
  LinuxContainerResources,
  PodSandboxConfig,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { MountPropagation, NamespaceMode } from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { invalidArgument } from "../errdefs/mod.ts";
import type { ResolvedUser } from "./user.ts";
import { defaultSeccomp } from "./seccomp_default.ts";
import {
  ALL_CAPS,
  capsFromMask,
  defaultSpec,
  type ImageProcessConfig,
  mergeEnv,
  type Mount,
  type Spec,
  withImageConfig,
} from "../oci/mod.ts";

/** The namespace every CRI object lives in. */
export const CRI_NAMESPACE = "k8s.io";

/** containerd's CRI annotation keys, which runtimes and shims read. */
export const Annotation = {
  containerType: "io.kubernetes.cri.container-type",
  sandboxId: "io.kubernetes.cri.sandbox-id",
  sandboxName: "io.kubernetes.cri.sandbox-name",
  sandboxNamespace: "io.kubernetes.cri.sandbox-namespace",
  sandboxUid: "io.kubernetes.cri.sandbox-uid",
  sandboxLogDir: "io.kubernetes.cri.sandbox-log-directory",
  containerName: "io.kubernetes.cri.container-name",
  imageName: "io.kubernetes.cri.image-name",
} as const;

/** The image config fields berth reads (the process part and the stop signal). */
export type ImageConfig = ImageProcessConfig & { StopSignal?: string };

/** A spec with the Linux fields CRI sets beyond berth's base {@link Spec}. */
type CriSpec = Spec & {
  process: Spec["process"] & { oomScoreAdj?: number };
  linux: Spec["linux"] & {
    sysctl?: Record<string, string>;
    seccomp?: object;
    rootfsPropagation?: string;
    resources: Spec["linux"]["resources"] & {
      cpu?: { shares?: number; quota?: number; period?: number; cpus?: string; mems?: string };
    };
  };
};

/** What a sandbox spec needs beyond the request. */
export interface SandboxSpecInput {
  id: string;
  config: PodSandboxConfig;
  image: ImageConfig;
  /** The pinned network namespace; empty for host network. */
  netnsPath: string;
  /** Host directory mounted as the pod's /dev/shm. */
  shmPath: string;
  /** Highest priority the daemon may give (restrict_oom_score_adj), or undefined. */
  maxOomScoreAdj?: number;
  /** As {@link ContainerSpecInput.seccomp}, from the pod's security context. */
  seccomp?: Record<string, unknown> | "default";
}

function cgroupsPath(parent: string, id: string): string {
  return parent !== "" ? `${parent.replace(/\/$/, "")}/${id}` : `/${CRI_NAMESPACE}/${id}`;
}

function withoutNamespace(spec: Spec, type: string): void {
  spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== type);
}

function joinNamespace(spec: Spec, type: string, path: string): void {
  withoutNamespace(spec, type);
  spec.linux.namespaces.push({ type, path });
}

function replaceMount(spec: Spec, m: Mount): void {
  spec.mounts = spec.mounts.filter((x) => x.destination !== m.destination);
  spec.mounts.push(m);
}

function clampOom(value: number, max: number | undefined): number {
  return max !== undefined && value < max ? max : value;
}

let boundingCaps: string[] | undefined;

/**
 * The capabilities the daemon itself may pass on (its bounding set): what
 * "all" means for a privileged container or an added ALL, as containerd
 * reads it; a VM without CAP_SYS_RESOURCE cannot give it to anyone.
 */
export function currentCaps(): string[] {
  if (boundingCaps === undefined) {
    const status = (() => {
      try {
        return Deno.readTextFileSync("/proc/self/status");
      } catch {
        return "";
      }
    })();
    const m = /^CapBnd:\s*([0-9a-f]+)$/m.exec(status);
    boundingCaps = m ? capsFromMask(m[1]) : [...ALL_CAPS];
  }
  return [...boundingCaps];
}

function privileged(spec: Spec): void {
  const all = () => currentCaps();
  spec.process.capabilities = { bounding: all(), effective: all(), permitted: all() };
  spec.linux.maskedPaths = [];
  spec.linux.readonlyPaths = [];
  spec.mounts = spec.mounts.map((m) =>
    m.destination === "/sys" ? { ...m, options: m.options.filter((o) => o !== "ro") } : m
  );
  spec.linux.resources.devices = [{ allow: true, access: "rwm" }];
}

/**
 * Sets the spec's seccomp. Called after the capabilities are settled: the
 * default profile follows the bounding set.
 */
function applySeccomp(spec: CriSpec, seccomp: Record<string, unknown> | "default" | undefined) {
  if (seccomp === "default") {
    spec.linux.seccomp = defaultSeccomp(spec.process.capabilities.bounding);
  } else if (seccomp !== undefined) spec.linux.seccomp = seccomp;
}

/** The spec of pod sandbox `id`: the sandbox image's process, its own namespaces, read-only root. */
export function sandboxSpec(input: SandboxSpecInput): Spec {
  const { id, config } = input;
  const spec = defaultSpec(CRI_NAMESPACE, id) as CriSpec;
  withImageConfig(spec, input.image);
  if (spec.process.args.length === 0) {
    throw invalidArgument("the sandbox image has no entrypoint or cmd to run");
  }
  const linux = config.linux;
  const sc = linux?.securityContext;
  const ns = sc?.namespaceOptions;
  if (ns?.network === NamespaceMode.NODE) {
    withoutNamespace(spec, "network");
    withoutNamespace(spec, "uts");
  } else {
    joinNamespace(spec, "network", input.netnsPath);
    spec.hostname = config.hostname;
  }
  if (ns?.pid === NamespaceMode.NODE) withoutNamespace(spec, "pid");
  if (ns?.ipc === NamespaceMode.NODE) {
    withoutNamespace(spec, "ipc");
    replaceMount(spec, {
      destination: "/dev/shm",
      type: "bind",
      source: "/dev/shm",
      options: ["rbind", "ro"],
    });
  } else {
    replaceMount(spec, {
      destination: "/dev/shm",
      type: "bind",
      source: input.shmPath,
      options: ["rbind", "ro"],
    });
  }
  spec.root.readonly = true;
  spec.linux.cgroupsPath = cgroupsPath(linux?.cgroupParent ?? "", id);
  if (linux && Object.keys(linux.sysctls).length > 0) spec.linux.sysctl = { ...linux.sysctls };
  if (sc?.runAsUser) spec.process.user.uid = Number(sc.runAsUser.value);
  if (sc?.runAsGroup) spec.process.user.gid = Number(sc.runAsGroup.value);
  if (sc && sc.supplementalGroups.length > 0) {
    spec.process.user.additionalGids = sc.supplementalGroups.map(Number);
  }
  if (sc?.privileged) privileged(spec);
  applySeccomp(spec, input.seccomp);
  spec.process.oomScoreAdj = clampOom(-998, input.maxOomScoreAdj);
  spec.annotations = {
    [Annotation.containerType]: "sandbox",
    [Annotation.sandboxId]: id,
    [Annotation.sandboxNamespace]: config.metadata?.namespace ?? "",
    [Annotation.sandboxUid]: config.metadata?.uid ?? "",
    [Annotation.sandboxName]: config.metadata?.name ?? "",
    [Annotation.sandboxLogDir]: config.logDirectory,
  };
  return spec;
}

/** What a container spec needs of its sandbox and image. */
export interface ContainerSpecInput {
  id: string;
  sandboxId: string;
  config: ContainerConfig;
  sandboxConfig: PodSandboxConfig;
  image: ImageConfig;
  /** The image's name as the request gave it. */
  imageName: string;
  /** The sandbox's init pid: its namespaces are joined through /proc/<pid>/ns. */
  sandboxPid: number;
  /** Host files for /etc/hosts, /etc/resolv.conf, /etc/hostname; and the pod's /dev/shm. */
  hostsPath: string;
  resolvPath: string;
  hostnamePath: string;
  shmPath: string;
  maxOomScoreAdj?: number;
  /** Host devices resolved by the caller (type and numbers), by container path. */
  devices: { path: string; type: string; major: number; minor: number; access: string }[];
  /** The process's user, resolved by the caller in the image (see {@link containerUser}). */
  user: ResolvedUser;
  /**
   * The OCI `linux.seccomp` to apply (see src/cri/seccomp.ts), if any;
   * "default" is the runtime's profile, built for the final capabilities.
   */
  seccomp?: Record<string, unknown> | "default";
}

/** Which user a container runs as, before resolution: run_as_user, run_as_username, the image's. */
export function containerUser(config: ContainerConfig, image: ImageConfig): string {
  const sc = config.linux?.securityContext;
  if (sc?.runAsUser) return String(sc.runAsUser.value);
  if (sc?.runAsUsername) return sc.runAsUsername;
  return image.User || "0";
}

/** The args the kubelet means: command replaces the entrypoint, args replace cmd. */
export function processArgs(config: ContainerConfig, image: ImageConfig): string[] {
  if (config.command.length > 0) return [...config.command, ...config.args];
  if (config.args.length > 0) return [...(image.Entrypoint ?? []), ...config.args];
  return [...(image.Entrypoint ?? []), ...(image.Cmd ?? [])];
}

function propagationOptions(p: MountPropagation): string[] {
  switch (p) {
    case MountPropagation.PROPAGATION_BIDIRECTIONAL:
      return ["rshared"];
    case MountPropagation.PROPAGATION_HOST_TO_CONTAINER:
      return ["rslave"];
    default:
      return ["rprivate"];
  }
}

/** The container resources of a CRI request, in the spec's shape. */
export function applyResources(
  spec: Spec,
  r: LinuxContainerResources | undefined,
  maxOom?: number,
): void {
  if (r === undefined) return;
  const s = spec as CriSpec;
  const cpu: NonNullable<CriSpec["linux"]["resources"]["cpu"]> = {};
  if (r.cpuShares > 0n) cpu.shares = Number(r.cpuShares);
  if (r.cpuQuota > 0n) cpu.quota = Number(r.cpuQuota);
  if (r.cpuPeriod > 0n) cpu.period = Number(r.cpuPeriod);
  if (r.cpusetCpus) cpu.cpus = r.cpusetCpus;
  if (r.cpusetMems) cpu.mems = r.cpusetMems;
  if (Object.keys(cpu).length > 0) s.linux.resources.cpu = cpu;
  if (r.memoryLimitInBytes > 0n) s.linux.resources.memory = { limit: Number(r.memoryLimitInBytes) };
  if (r.oomScoreAdj !== 0n) s.process.oomScoreAdj = clampOom(Number(r.oomScoreAdj), maxOom);
}

/** The spec of container `id` in its pod. */
export function containerSpec(input: ContainerSpecInput): Spec {
  const { id, config, sandboxConfig } = input;
  const spec = defaultSpec(CRI_NAMESPACE, id) as CriSpec;
  withImageConfig(spec, { ...input.image, User: undefined });
  spec.process.args = processArgs(config, input.image);
  if (spec.process.args.length === 0) {
    throw invalidArgument(
      `container ${config.metadata?.name}: no command given and the image has no entrypoint or cmd`,
    );
  }
  if (config.workingDir) spec.process.cwd = config.workingDir;
  spec.process.env = mergeEnv(spec.process.env, config.envs.map((e) => `${e.key}=${e.value}`));
  spec.process.terminal = config.tty;
  const sc = config.linux?.securityContext;
  spec.process.user = {
    uid: input.user.uid,
    gid: input.user.gid,
    ...(input.user.additionalGids.length > 0 ? { additionalGids: input.user.additionalGids } : {}),
  };
  const podNs = sandboxConfig.linux?.securityContext?.namespaceOptions;
  const ns = sc?.namespaceOptions;
  const proc = (n: string) => `/proc/${input.sandboxPid}/ns/${n}`;
  if (podNs?.network === NamespaceMode.NODE) {
    withoutNamespace(spec, "network");
    withoutNamespace(spec, "uts");
  } else {
    joinNamespace(spec, "network", proc("net"));
    joinNamespace(spec, "uts", proc("uts"));
    spec.hostname = sandboxConfig.hostname;
  }
  if (podNs?.ipc === NamespaceMode.NODE) withoutNamespace(spec, "ipc");
  else joinNamespace(spec, "ipc", proc("ipc"));
  const pidMode = ns?.pid ?? NamespaceMode.CONTAINER;
  if (pidMode === NamespaceMode.NODE) withoutNamespace(spec, "pid");
  else if (pidMode === NamespaceMode.POD) joinNamespace(spec, "pid", proc("pid"));

  const mounts: Mount[] = [];
  const taken = new Set(config.mounts.map((m) => m.containerPath));
  const fileMount = (destination: string, source: string, ro: boolean) => {
    if (!taken.has(destination)) {
      mounts.push({
        destination,
        type: "bind",
        source,
        options: ["rbind", "rprivate", ro ? "ro" : "rw"],
      });
    }
  };
  fileMount("/etc/hostname", input.hostnamePath, sc?.readonlyRootfs ?? false);
  fileMount("/etc/hosts", input.hostsPath, sc?.readonlyRootfs ?? false);
  fileMount("/etc/resolv.conf", input.resolvPath, sc?.readonlyRootfs ?? false);
  if (!taken.has("/dev/shm")) {
    const shm = podNs?.ipc === NamespaceMode.NODE ? "/dev/shm" : input.shmPath;
    mounts.push({ destination: "/dev/shm", type: "bind", source: shm, options: ["rbind", "rw"] });
  }
  for (const m of config.mounts) {
    if (!m.containerPath.startsWith("/")) {
      throw invalidArgument(`mount ${m.containerPath}: the container path must be absolute`);
    }
    mounts.push({
      destination: m.containerPath,
      type: "bind",
      source: m.hostPath,
      options: ["rbind", ...propagationOptions(m.propagation), m.readonly ? "ro" : "rw"],
    });
  }
  // The root's propagation must let a shared or slave bind mount work (containerd does the same).
  const props = config.mounts.map((m) => m.propagation);
  if (props.includes(MountPropagation.PROPAGATION_BIDIRECTIONAL)) {
    spec.linux.rootfsPropagation = "rshared";
  } else if (props.includes(MountPropagation.PROPAGATION_HOST_TO_CONTAINER)) {
    spec.linux.rootfsPropagation = "rslave";
  }
  const destinations = new Set(mounts.map((m) => m.destination));
  spec.mounts = [...spec.mounts.filter((m) => !destinations.has(m.destination)), ...mounts];

  for (const d of input.devices) {
    spec.linux.devices = spec.linux.devices ?? [];
    spec.linux.devices.push({
      path: d.path,
      type: d.type,
      major: d.major,
      minor: d.minor,
      fileMode: 0o666,
      uid: 0,
      gid: 0,
    });
    spec.linux.resources.devices.push({
      allow: true,
      type: d.type,
      major: d.major,
      minor: d.minor,
      access: d.access,
    });
  }
  applyResources(spec, config.linux?.resources, input.maxOomScoreAdj);

  if (sc) {
    if (sc.runAsGroup && !sc.runAsUser && !sc.runAsUsername) {
      throw invalidArgument("user group is specified without user");
    }
    if (sc.runAsGroup) spec.process.user.gid = Number(sc.runAsGroup.value);
    const gids = [...spec.process.user.additionalGids ?? [], ...sc.supplementalGroups.map(Number)];
    if (gids.length > 0) spec.process.user.additionalGids = [...new Set(gids)];
    spec.root.readonly = sc.readonlyRootfs;
    spec.process.noNewPrivileges = sc.noNewPrivs;
    if (sc.privileged) {
      if (!sandboxConfig.linux?.securityContext?.privileged) {
        throw invalidArgument(
          "no privileged container allowed in a sandbox that is not privileged",
        );
      }
      privileged(spec);
    } else if (sc.capabilities) {
      const caps = spec.process.capabilities;
      const upper = (c: string) => (c.startsWith("CAP_") ? c : `CAP_${c}`).toUpperCase();
      const add = sc.capabilities.addCapabilities.map(upper);
      const drop = sc.capabilities.dropCapabilities.map(upper);
      const change = (set: string[]) => {
        let out = add.includes("CAP_ALL") ? currentCaps() : [...set, ...add];
        out = drop.includes("CAP_ALL") ? out.filter((c) => add.includes(c)) : out;
        return [...new Set(out.filter((c) => !drop.includes(c) || add.includes(c)))];
      };
      caps.bounding = change(caps.bounding);
      caps.effective = change(caps.effective);
      caps.permitted = change(caps.permitted);
    }
    if (!sc.privileged) {
      if (sc.maskedPaths.length > 0) spec.linux.maskedPaths = [...sc.maskedPaths];
      if (sc.readonlyPaths.length > 0) spec.linux.readonlyPaths = [...sc.readonlyPaths];
    }
  } else {
    spec.process.noNewPrivileges = false;
  }
  applySeccomp(spec, input.seccomp);
  spec.linux.cgroupsPath = cgroupsPath(sandboxConfig.linux?.cgroupParent ?? "", id);
  spec.annotations = {
    ...config.annotations,
    [Annotation.containerType]: "container",
    [Annotation.sandboxId]: input.sandboxId,
    [Annotation.sandboxNamespace]: sandboxConfig.metadata?.namespace ?? "",
    [Annotation.sandboxUid]: sandboxConfig.metadata?.uid ?? "",
    [Annotation.sandboxName]: sandboxConfig.metadata?.name ?? "",
    [Annotation.containerName]: config.metadata?.name ?? "",
    [Annotation.imageName]: input.imageName,
  };
  return spec;
}
