/**
 * OCI runtime spec generation for Linux containers, shaped like the spec
 * containerd's client builds for `ctr run`: the same defaults (mounts,
 * capabilities, masked paths, namespaces, devices), then the image config,
 * then the user's options. Pure data in, data out: nothing here touches the
 * system, so every option is unit-testable.
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** The parts of an OCI runtime spec berth writes (a JSON object; unknown fields kept as-is). */
export interface Spec {
  ociVersion: string;
  process: Process;
  root: { path: string; readonly?: boolean };
  hostname?: string;
  mounts: Mount[];
  annotations?: Record<string, string>;
  hooks?: Hooks;
  linux: Linux;
}

/** One OCI hook: an absolute path, its argv (argv[0] included) and environment. */
export interface Hook {
  path: string;
  args?: string[];
  env?: string[];
  timeout?: number;
}

/** The spec's hooks, by the stage the runtime runs them at. */
export type Hooks = Partial<Record<HookStage, Hook[]>>;

/** The stages of the OCI runtime spec at which a runtime (runc) runs hooks. */
export const HOOK_STAGES = [
  "prestart",
  "createRuntime",
  "createContainer",
  "startContainer",
  "poststart",
  "poststop",
] as const;

/** One of {@link HOOK_STAGES}. */
export type HookStage = typeof HOOK_STAGES[number];

/** The container's first process. */
export interface Process {
  terminal?: boolean;
  user: { uid: number; gid: number; additionalGids?: number[] };
  args: string[];
  env: string[];
  cwd: string;
  capabilities: {
    bounding: string[];
    effective: string[];
    permitted: string[];
    inheritable?: string[];
    ambient?: string[];
  };
  rlimits: { type: string; hard: number; soft: number }[];
  noNewPrivileges: boolean;
}

/** A mount in the spec. */
export interface Mount {
  destination: string;
  type: string;
  source: string;
  options: string[];
}

/** Linux-specific part of the spec. */
export interface Linux {
  resources: {
    devices: { allow: boolean; type?: string; major?: number; minor?: number; access: string }[];
    memory?: { limit?: number };
    cpu?: { shares?: number; quota?: number; period?: number };
  };
  cgroupsPath: string;
  namespaces: { type: string; path?: string }[];
  maskedPaths?: string[];
  readonlyPaths?: string[];
  devices?: {
    path: string;
    type: string;
    major: number;
    minor: number;
    fileMode: number;
    uid: number;
    gid: number;
  }[];
}

/** The OCI runtime spec version berth writes. */
export const OCI_VERSION = "1.0.2-dev";

/** PATH a container gets when its image sets none (containerd's default). */
export const DEFAULT_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** Capabilities an unprivileged container keeps (containerd's default set). */
export const DEFAULT_CAPS: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_FSETID",
  "CAP_FOWNER",
  "CAP_MKNOD",
  "CAP_NET_RAW",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETFCAP",
  "CAP_SETPCAP",
  "CAP_NET_BIND_SERVICE",
  "CAP_SYS_CHROOT",
  "CAP_KILL",
  "CAP_AUDIT_WRITE",
];

/** Every capability Linux knows, in kernel number order (index = CAP_* number), for --privileged. */
export const ALL_CAPS: readonly string[] = [
  "CAP_CHOWN",
  "CAP_DAC_OVERRIDE",
  "CAP_DAC_READ_SEARCH",
  "CAP_FOWNER",
  "CAP_FSETID",
  "CAP_KILL",
  "CAP_SETGID",
  "CAP_SETUID",
  "CAP_SETPCAP",
  "CAP_LINUX_IMMUTABLE",
  "CAP_NET_BIND_SERVICE",
  "CAP_NET_BROADCAST",
  "CAP_NET_ADMIN",
  "CAP_NET_RAW",
  "CAP_IPC_LOCK",
  "CAP_IPC_OWNER",
  "CAP_SYS_MODULE",
  "CAP_SYS_RAWIO",
  "CAP_SYS_CHROOT",
  "CAP_SYS_PTRACE",
  "CAP_SYS_PACCT",
  "CAP_SYS_ADMIN",
  "CAP_SYS_BOOT",
  "CAP_SYS_NICE",
  "CAP_SYS_RESOURCE",
  "CAP_SYS_TIME",
  "CAP_SYS_TTY_CONFIG",
  "CAP_MKNOD",
  "CAP_LEASE",
  "CAP_AUDIT_WRITE",
  "CAP_AUDIT_CONTROL",
  "CAP_SETFCAP",
  "CAP_MAC_OVERRIDE",
  "CAP_MAC_ADMIN",
  "CAP_SYSLOG",
  "CAP_WAKE_ALARM",
  "CAP_BLOCK_SUSPEND",
  "CAP_AUDIT_READ",
  "CAP_PERFMON",
  "CAP_BPF",
  "CAP_CHECKPOINT_RESTORE",
];

const NAMESPACE_TYPES = new Set(["pid", "ipc", "uts", "mount", "network", "user", "cgroup"]);

/** The default spec of a Linux container `id` in berth namespace `namespace`. */
export function defaultSpec(namespace: string, id: string): Spec {
  const caps = () => [...DEFAULT_CAPS];
  // Devices every container may use: null, zero, full, random, urandom, tty, ptmx, pts/*.
  const allowed: [string, number, number][] = [
    ["c", 1, 3],
    ["c", 1, 8],
    ["c", 1, 7],
    ["c", 5, 0],
    ["c", 1, 5],
    ["c", 1, 9],
    ["c", 5, 1],
    ["c", 136, -1],
    ["c", 5, 2],
    ["c", 10, 200],
  ];
  return {
    ociVersion: OCI_VERSION,
    process: {
      user: { uid: 0, gid: 0 },
      args: [],
      env: [DEFAULT_PATH],
      cwd: "/",
      capabilities: { bounding: caps(), effective: caps(), permitted: caps() },
      rlimits: [{ type: "RLIMIT_NOFILE", hard: 1024, soft: 1024 }],
      noNewPrivileges: true,
    },
    root: { path: "rootfs" },
    mounts: [
      {
        destination: "/proc",
        type: "proc",
        source: "proc",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/dev",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
      {
        destination: "/dev/pts",
        type: "devpts",
        source: "devpts",
        options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
      },
      {
        destination: "/dev/shm",
        type: "tmpfs",
        source: "shm",
        options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
      },
      {
        destination: "/dev/mqueue",
        type: "mqueue",
        source: "mqueue",
        options: ["nosuid", "noexec", "nodev"],
      },
      {
        destination: "/sys",
        type: "sysfs",
        source: "sysfs",
        options: ["nosuid", "noexec", "nodev", "ro"],
      },
      {
        destination: "/run",
        type: "tmpfs",
        source: "tmpfs",
        options: ["nosuid", "strictatime", "mode=755", "size=65536k"],
      },
    ],
    linux: {
      resources: {
        devices: [
          { allow: false, access: "rwm" },
          ...allowed.map(([type, major, minor]) => ({
            allow: true,
            type,
            major,
            ...(minor >= 0 ? { minor } : {}),
            access: "rwm",
          })),
        ],
      },
      cgroupsPath: `/${namespace}/${id}`,
      namespaces: ["pid", "ipc", "uts", "mount", "network"].map((type) => ({ type })),
      maskedPaths: [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
      ],
      readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
    },
  };
}

/** The parts of an OCI image config (its "config" object) that shape the process. */
export interface ImageProcessConfig {
  User?: string;
  Env?: string[] | null;
  Entrypoint?: string[] | null;
  Cmd?: string[] | null;
  WorkingDir?: string;
}

/**
 * Replaces or adds `KEY=VALUE` entries: a later entry for the same key wins,
 * keeping the first one's position (as containerd's env merge does).
 */
export function mergeEnv(base: string[], extra: string[]): string[] {
  const out = [...base];
  for (const e of extra) {
    const key = e.split("=", 1)[0];
    const i = out.findIndex((x) => x.split("=", 1)[0] === key);
    if (i >= 0) out[i] = e;
    else out.push(e);
  }
  return out;
}

/** Parses "uid", "uid:gid" (numbers; "root" means 0) into ids. */
export function parseUser(user: string): { uid: number; gid: number } {
  const [u, g] = user.split(":", 2);
  const num = (s: string, what: string) => {
    if (s === "root") return 0;
    if (!/^\d+$/.test(s)) {
      throw invalidArgument(
        `user "${user}": ${what} must be numeric (names need the image's /etc/passwd, which berth does not read yet)`,
      );
    }
    return Number(s);
  };
  const uid = num(u, "uid");
  return { uid, gid: g === undefined ? (u === "root" ? 0 : uid) : num(g, "gid") };
}

/**
 * Applies an image config: its env after the default PATH, its working
 * directory, user, and entrypoint+cmd as args (unless `args` replaces them).
 */
export function withImageConfig(spec: Spec, config: ImageProcessConfig, args: string[] = []): void {
  const env = config.Env ?? [];
  spec.process.env = env.some((e) => e.startsWith("PATH="))
    ? mergeEnv([], env)
    : mergeEnv([DEFAULT_PATH], env);
  spec.process.cwd = config.WorkingDir || "/";
  if (config.User) spec.process.user = parseUser(config.User);
  spec.process.args = args.length > 0
    ? [...args]
    : [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
}

/** Options from `run`/`containers create` flags, in ctr's terms. */
export interface SpecOptions {
  tty?: boolean;
  env?: string[];
  cwd?: string;
  user?: string;
  mounts?: Mount[];
  annotations?: Record<string, string>;
  netHost?: boolean;
  privileged?: boolean;
  readOnly?: boolean;
  /** Bytes. */
  memoryLimit?: number;
  /** CPUs, e.g. 1.5. */
  cpus?: number;
  cpuShares?: number;
  capAdd?: string[];
  capDrop?: string[];
  /** `type:path` pairs: join an existing namespace. */
  withNs?: string[];
  /** Absolute path of a prepared rootfs (--rootfs). */
  rootfs?: string;
  /** Host files to bind for --net-host (resolv.conf, hosts), when present. */
  hostFiles?: string[];
  hostname?: string;
  /** Hooks added at their stages, in order (see {@link parseHookFlag}). */
  hooks?: { stage: HookStage; hook: Hook }[];
  /**
   * Capabilities this host can grant (the caller's bounding set, as
   * containerd's privileged option takes its own): --privileged and ALL
   * mean these. Default: {@link ALL_CAPS}.
   */
  hostCaps?: string[];
}

function normalizeCap(c: string): string {
  const up = c.toUpperCase();
  return up === "ALL" ? "ALL" : up.startsWith("CAP_") ? up : `CAP_${up}`;
}

/** Parses ctr's `--mount type=bind,src=/a,dst=/b,options=rbind:ro`. */
export function parseMountFlag(text: string): Mount {
  const m: Mount = { type: "", source: "", destination: "", options: [] };
  for (const part of text.split(",")) {
    const i = part.indexOf("=");
    if (i <= 0) {
      throw invalidArgument(
        `mount "${text}": expected key=value pairs (type=, src=, dst=, options=)`,
      );
    }
    const [k, v] = [part.slice(0, i), part.slice(i + 1)];
    switch (k) {
      case "type":
        m.type = v;
        break;
      case "source":
      case "src":
        m.source = v;
        break;
      case "destination":
      case "dst":
        m.destination = v;
        break;
      case "options":
        m.options = v.split(":").filter((o) => o);
        break;
      default:
        throw invalidArgument(`mount "${text}": unknown key "${k}" (use type, src, dst, options)`);
    }
  }
  if (!m.destination) throw invalidArgument(`mount "${text}": dst= is required`);
  if (!m.type) m.type = "none";
  return m;
}

/**
 * Parses `--hook STAGE=PATH[:ARG...]` (arguments split at ":") or
 * `--hook STAGE=["PATH","ARG",...]` (a JSON array, for arguments that hold a
 * ":"). PATH must be absolute, as the runtime runs it without a PATH search;
 * it is also the hook's argv[0].
 */
export function parseHookFlag(text: string): { stage: HookStage; hook: Hook } {
  const i = text.indexOf("=");
  const stage = text.slice(0, Math.max(i, 0)) as HookStage;
  if (!HOOK_STAGES.includes(stage)) {
    throw invalidArgument(
      `--hook "${text}": expected STAGE=PATH[:ARG...] with STAGE one of ${HOOK_STAGES.join(", ")}`,
    );
  }
  const rest = text.slice(i + 1);
  let argv: string[];
  if (rest.startsWith("[")) {
    try {
      argv = JSON.parse(rest);
    } catch (err) {
      throw invalidArgument(`--hook "${text}": not a JSON array: ${(err as Error).message}`);
    }
    if (!Array.isArray(argv) || !argv.every((a) => typeof a === "string")) {
      throw invalidArgument(`--hook "${text}": the JSON form is an array of strings`);
    }
  } else {
    argv = rest.split(":");
  }
  if (!argv[0]?.startsWith("/")) {
    throw invalidArgument(`--hook "${text}": the hook's path must be absolute`);
  }
  return { stage, hook: { path: argv[0], args: argv } };
}

/** Applies the user's options, in the order ctr applies them. */
export function applyOptions(spec: Spec, o: SpecOptions): void {
  if (o.rootfs) spec.root.path = o.rootfs;
  if (o.tty) spec.process.terminal = true;
  if (o.env?.length) spec.process.env = mergeEnv(spec.process.env, o.env);
  if (o.cwd) spec.process.cwd = o.cwd;
  if (o.user) spec.process.user = parseUser(o.user);
  if (o.hostname) spec.hostname = o.hostname;
  if (o.mounts?.length) {
    // A user mount replaces a default one at the same destination.
    const dsts = new Set(o.mounts.map((m) => m.destination));
    spec.mounts = [...spec.mounts.filter((m) => !dsts.has(m.destination)), ...o.mounts];
  }
  if (o.annotations && Object.keys(o.annotations).length) {
    spec.annotations = { ...spec.annotations, ...o.annotations };
  }
  if (o.netHost) {
    spec.linux.namespaces = spec.linux.namespaces.filter((n) => n.type !== "network");
    for (const f of o.hostFiles ?? []) {
      spec.mounts.push({ destination: f, type: "bind", source: f, options: ["rbind", "ro"] });
    }
  }
  const known = o.hostCaps ?? [...ALL_CAPS];
  if (o.privileged) {
    const all = [...known];
    spec.process.capabilities = { bounding: all, effective: [...all], permitted: [...all] };
    spec.process.noNewPrivileges = false;
    delete spec.linux.maskedPaths;
    delete spec.linux.readonlyPaths;
    spec.linux.resources.devices = [{ allow: true, access: "rwm" }];
    for (const m of spec.mounts) {
      if (m.destination === "/sys") m.options = m.options.filter((x) => x !== "ro");
    }
  }
  if (o.capAdd?.length || o.capDrop?.length) {
    let caps = new Set(spec.process.capabilities.bounding);
    for (const c of (o.capAdd ?? []).map(normalizeCap)) {
      if (c === "ALL") caps = new Set(known);
      else caps.add(c);
    }
    for (const c of (o.capDrop ?? []).map(normalizeCap)) {
      if (c === "ALL") caps.clear();
      else caps.delete(c);
    }
    const list = [...caps];
    spec.process.capabilities = { bounding: list, effective: [...list], permitted: [...list] };
  }
  for (const { stage, hook } of o.hooks ?? []) {
    spec.hooks = { ...spec.hooks, [stage]: [...spec.hooks?.[stage] ?? [], hook] };
  }
  if (o.readOnly) spec.root.readonly = true;
  if (o.memoryLimit !== undefined && o.memoryLimit > 0) {
    spec.linux.resources.memory = { limit: o.memoryLimit };
  }
  if (o.cpus !== undefined && o.cpus > 0) {
    const period = 100_000;
    spec.linux.resources.cpu = {
      ...spec.linux.resources.cpu,
      quota: Math.round(o.cpus * period),
      period,
    };
  }
  if (o.cpuShares !== undefined && o.cpuShares > 0) {
    spec.linux.resources.cpu = { ...spec.linux.resources.cpu, shares: o.cpuShares };
  }
  for (const w of o.withNs ?? []) {
    const i = w.indexOf(":");
    const type = i > 0 ? w.slice(0, i) : "";
    const path = w.slice(i + 1);
    if (!NAMESPACE_TYPES.has(type) || !path) {
      throw invalidArgument(
        `--with-ns "${w}": expected TYPE:PATH with TYPE one of ${[...NAMESPACE_TYPES].join(", ")}`,
      );
    }
    spec.linux.namespaces = [...spec.linux.namespaces.filter((n) => n.type !== type), {
      type,
      path,
    }];
  }
}

/** Capability names whose bits are set in a /proc/<pid>/status mask like "000001fffeffffff". */
export function capsFromMask(hex: string): string[] {
  const mask = BigInt(`0x${hex.trim() || "0"}`);
  return ALL_CAPS.filter((_, i) => (mask >> BigInt(i)) & 1n);
}

/** containerd's type URL for a runtime spec stored in a container record. */
export const SPEC_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";

/** The spec as the JSON bytes a container record's `spec` Any carries. */
export function encodeSpec(spec: Spec): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(spec));
}
