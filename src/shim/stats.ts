/**
 * Cgroup metrics of a container, as the Any that containerd's clients
 * decode: io.containerd.cgroups.v1.Metrics on cgroup v1 (per controller
 * hierarchies, as on this hybrid host) and io.containerd.cgroups.v2.Metrics
 * on the unified hierarchy. Values are read from the kernel's files as they
 * are; a missing controller leaves its part empty.
 * @module
 */

import { create, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { notFound } from "../errdefs/mod.ts";
import * as v1 from "../gen/containerd/cgroups/v1/metrics_pb.ts";
import * as v2 from "../gen/containerd/cgroups/v2/metrics_pb.ts";

const CGROUP_ROOT = "/sys/fs/cgroup";

/** Where a container's cgroups are: one path per v1 controller, or the unified path. */
export type CgroupRef =
  | { version: 1; paths: Record<string, string> }
  | { version: 2; path: string };

/** True when /sys/fs/cgroup is the unified (v2-only) hierarchy. */
export function isUnified(): boolean {
  try {
    Deno.statSync(`${CGROUP_ROOT}/cgroup.controllers`);
    return true;
  } catch {
    return false;
  }
}

/** Reads the cgroups of `pid` from /proc (taken at Create, while the process exists). */
export async function cgroupOf(pid: number): Promise<CgroupRef> {
  const text = await Deno.readTextFile(`/proc/${pid}/cgroup`);
  if (isUnified()) {
    const line = text.split("\n").find((l) => l.startsWith("0::"));
    if (!line) throw notFound(`unified cgroup of pid ${pid}`);
    return { version: 2, path: `${CGROUP_ROOT}${line.slice(3)}` };
  }
  const paths: Record<string, string> = {};
  for (const line of text.split("\n")) {
    // "4:cpu,cpuacct:/path": id, controllers, path (the path may hold ':').
    const first = line.indexOf(":");
    const second = line.indexOf(":", first + 1);
    if (first < 0 || second < 0) continue;
    const controllers = line.slice(first + 1, second);
    const path = line.slice(second + 1);
    if (!controllers) continue;
    for (const c of controllers.split(",")) {
      const name = c.replace(/^name=/, "");
      // The mount directory of a co-mounted controller pair is named by both (cpu,cpuacct).
      paths[name] = `${CGROUP_ROOT}/${mountDirOf(name)}${path}`;
    }
  }
  return { version: 1, paths };
}

const mountDirs = new Map<string, string>();

/** The directory under /sys/fs/cgroup where controller `name` is mounted (a symlink or the real one). */
function mountDirOf(name: string): string {
  const cached = mountDirs.get(name);
  if (cached) return cached;
  let dir = name;
  try {
    Deno.statSync(`${CGROUP_ROOT}/${name}`);
  } catch {
    for (const e of Deno.readDirSync(CGROUP_ROOT)) {
      if (e.name.split(",").includes(name)) dir = e.name;
    }
  }
  mountDirs.set(name, dir);
  return dir;
}

function readText(path: string): string | null {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
}

function readU64(path: string): bigint {
  const t = readText(path)?.trim();
  if (!t || t === "max") return 0n;
  try {
    return BigInt(t);
  } catch {
    return 0n;
  }
}

/** Parses "key value" lines (memory.stat, cpu.stat, ...). */
function readKeyed(path: string): Map<string, bigint> {
  const out = new Map<string, bigint>();
  for (const line of (readText(path) ?? "").split("\n")) {
    const [k, v] = line.trim().split(/\s+/);
    if (k && v !== undefined && /^\d+$/.test(v)) out.set(k, BigInt(v));
  }
  return out;
}

/** USER_HZ: the unit of cpuacct.stat. */
const USER_HZ = 100n;
const NS_PER_SEC = 1_000_000_000n;

function memoryV1(dir: string): MessageInitShape<typeof v1.MemoryStatSchema> {
  const s = readKeyed(`${dir}/memory.stat`);
  const g = (k: string) => s.get(k) ?? 0n;
  const entry = (prefix: string) => ({
    usage: readU64(`${dir}/${prefix}usage_in_bytes`),
    max: readU64(`${dir}/${prefix}max_usage_in_bytes`),
    failcnt: readU64(`${dir}/${prefix}failcnt`),
    limit: readU64(`${dir}/${prefix}limit_in_bytes`),
  });
  // Each memory.stat value comes with its hierarchical total_ twin.
  const both = (field: string, key = field) => ({
    [field]: g(key),
    [`total${field[0].toUpperCase()}${field.slice(1)}`]: g(`total_${key}`),
  });
  return {
    ...both("cache"),
    ...both("rss"),
    ...both("rssHuge", "rss_huge"),
    ...both("mappedFile", "mapped_file"),
    ...both("dirty"),
    ...both("writeback"),
    ...both("pgPgIn", "pgpgin"),
    ...both("pgPgOut", "pgpgout"),
    ...both("pgFault", "pgfault"),
    ...both("pgMajFault", "pgmajfault"),
    ...both("inactiveAnon", "inactive_anon"),
    ...both("activeAnon", "active_anon"),
    ...both("inactiveFile", "inactive_file"),
    ...both("activeFile", "active_file"),
    ...both("unevictable"),
    hierarchicalMemoryLimit: g("hierarchical_memory_limit"),
    hierarchicalSwapLimit: g("hierarchical_memsw_limit"),
    usage: entry("memory."),
    swap: entry("memory.memsw."),
    kernel: entry("memory.kmem."),
    kernelTcp: entry("memory.kmem.tcp."),
  };
}

function blkioV1(dir: string): MessageInitShape<typeof v1.BlkIOStatSchema> {
  const entries = (file: string) => {
    const out: MessageInitShape<typeof v1.BlkIOEntrySchema>[] = [];
    for (const line of (readText(`${dir}/${file}`) ?? "").split("\n")) {
      const f = line.trim().split(/\s+/);
      if (f.length < 2 || !f[0].includes(":")) continue;
      const [major, minor] = f[0].split(":").map((x) => BigInt(x));
      const op = f.length === 3 ? f[1] : "";
      out.push({ major, minor, op, value: BigInt(f[f.length - 1]) });
    }
    return out;
  };
  return {
    ioServiceBytesRecursive: entries("blkio.io_service_bytes_recursive"),
    ioServicedRecursive: entries("blkio.io_serviced_recursive"),
    ioQueuedRecursive: entries("blkio.io_queued_recursive"),
    ioServiceTimeRecursive: entries("blkio.io_service_time_recursive"),
    ioWaitTimeRecursive: entries("blkio.io_wait_time_recursive"),
    ioMergedRecursive: entries("blkio.io_merged_recursive"),
    ioTimeRecursive: entries("blkio.time_recursive"),
    sectorsRecursive: entries("blkio.sectors_recursive"),
  };
}

/** Metrics of a cgroup v1 container. */
export function metricsV1(paths: Record<string, string>): v1.Metrics {
  const m: MessageInitShape<typeof v1.MetricsSchema> = {};
  if (paths.pids) {
    m.pids = {
      current: readU64(`${paths.pids}/pids.current`),
      limit: readU64(`${paths.pids}/pids.max`),
    };
  }
  if (paths.cpuacct || paths.cpu) {
    const acct = paths.cpuacct;
    const st = acct ? readKeyed(`${acct}/cpuacct.stat`) : new Map<string, bigint>();
    const throttle = paths.cpu ? readKeyed(`${paths.cpu}/cpu.stat`) : new Map<string, bigint>();
    m.cpu = {
      usage: acct
        ? {
          total: readU64(`${acct}/cpuacct.usage`),
          user: ((st.get("user") ?? 0n) * NS_PER_SEC) / USER_HZ,
          kernel: ((st.get("system") ?? 0n) * NS_PER_SEC) / USER_HZ,
          perCpu: (readText(`${acct}/cpuacct.usage_percpu`) ?? "").trim().split(/\s+/).filter((x) =>
            x
          ).map((x) => BigInt(x)),
        }
        : undefined,
      throttling: {
        periods: throttle.get("nr_periods") ?? 0n,
        throttledPeriods: throttle.get("nr_throttled") ?? 0n,
        throttledTime: throttle.get("throttled_time") ?? 0n,
      },
    };
  }
  if (paths.memory) {
    m.memory = memoryV1(paths.memory);
    const oom = readKeyed(`${paths.memory}/memory.oom_control`);
    m.memoryOomControl = {
      oomKillDisable: oom.get("oom_kill_disable") ?? 0n,
      underOom: oom.get("under_oom") ?? 0n,
      oomKill: oom.get("oom_kill") ?? 0n,
    };
  }
  if (paths.blkio) m.blkio = blkioV1(paths.blkio);
  return create(v1.MetricsSchema, m);
}

/** Metrics of a cgroup v2 container. */
export function metricsV2(dir: string): v2.Metrics {
  const cpu = readKeyed(`${dir}/cpu.stat`);
  const mem = readKeyed(`${dir}/memory.stat`);
  const ev = readKeyed(`${dir}/memory.events`);
  const g = (k: string) => mem.get(k) ?? 0n;
  const io: MessageInitShape<typeof v2.IOEntrySchema>[] = [];
  for (const line of (readText(`${dir}/io.stat`) ?? "").split("\n")) {
    const f = line.trim().split(/\s+/);
    if (!f[0]?.includes(":")) continue;
    const [major, minor] = f[0].split(":").map((x) => BigInt(x));
    const kv = new Map(f.slice(1).map((p) => p.split("=") as [string, string]));
    const n = (k: string) => BigInt(kv.get(k) ?? "0");
    io.push({
      major,
      minor,
      rbytes: n("rbytes"),
      wbytes: n("wbytes"),
      rios: n("rios"),
      wios: n("wios"),
    });
  }
  return create(v2.MetricsSchema, {
    pids: { current: readU64(`${dir}/pids.current`), limit: readU64(`${dir}/pids.max`) },
    cpu: {
      usageUsec: cpu.get("usage_usec") ?? 0n,
      userUsec: cpu.get("user_usec") ?? 0n,
      systemUsec: cpu.get("system_usec") ?? 0n,
      nrPeriods: cpu.get("nr_periods") ?? 0n,
      nrThrottled: cpu.get("nr_throttled") ?? 0n,
      throttledUsec: cpu.get("throttled_usec") ?? 0n,
    },
    memory: {
      anon: g("anon"),
      file: g("file"),
      kernelStack: g("kernel_stack"),
      slab: g("slab"),
      sock: g("sock"),
      shmem: g("shmem"),
      fileMapped: g("file_mapped"),
      fileDirty: g("file_dirty"),
      fileWriteback: g("file_writeback"),
      anonThp: g("anon_thp"),
      inactiveAnon: g("inactive_anon"),
      activeAnon: g("active_anon"),
      inactiveFile: g("inactive_file"),
      activeFile: g("active_file"),
      unevictable: g("unevictable"),
      slabReclaimable: g("slab_reclaimable"),
      slabUnreclaimable: g("slab_unreclaimable"),
      pgfault: g("pgfault"),
      pgmajfault: g("pgmajfault"),
      workingsetRefault: g("workingset_refault"),
      workingsetActivate: g("workingset_activate"),
      workingsetNodereclaim: g("workingset_nodereclaim"),
      pgrefill: g("pgrefill"),
      pgscan: g("pgscan"),
      pgsteal: g("pgsteal"),
      pgactivate: g("pgactivate"),
      pgdeactivate: g("pgdeactivate"),
      pglazyfree: g("pglazyfree"),
      pglazyfreed: g("pglazyfreed"),
      thpFaultAlloc: g("thp_fault_alloc"),
      thpCollapseAlloc: g("thp_collapse_alloc"),
      usage: readU64(`${dir}/memory.current`),
      usageLimit: readU64(`${dir}/memory.max`),
      swapUsage: readU64(`${dir}/memory.swap.current`),
      swapLimit: readU64(`${dir}/memory.swap.max`),
    },
    io: { usage: io },
    memoryEvents: {
      low: ev.get("low") ?? 0n,
      high: ev.get("high") ?? 0n,
      max: ev.get("max") ?? 0n,
      oom: ev.get("oom") ?? 0n,
      oomKill: ev.get("oom_kill") ?? 0n,
    },
  });
}

/** The container's metrics packed as the Any `ctr tasks metrics` decodes. */
export function metricsAny(ref: CgroupRef): Any {
  if (ref.version === 1) {
    return {
      $typeName: "google.protobuf.Any",
      typeUrl: "io.containerd.cgroups.v1.Metrics",
      value: toBinary(v1.MetricsSchema, metricsV1(ref.paths)),
    };
  }
  return {
    $typeName: "google.protobuf.Any",
    typeUrl: "io.containerd.cgroups.v2.Metrics",
    value: toBinary(v2.MetricsSchema, metricsV2(ref.path)),
  };
}

/**
 * How many times the kernel's OOM killer has killed in the container's
 * memory cgroup (v1 memory.oom_control or v2 memory.events "oom_kill"), or
 * null when the cgroup cannot be read.
 */
export function oomKillCount(ref: CgroupRef): bigint | null {
  const file = ref.version === 1
    ? (ref.paths.memory ? `${ref.paths.memory}/memory.oom_control` : null)
    : `${ref.path}/memory.events`;
  if (!file || readText(file) === null) return null;
  return readKeyed(file).get("oom_kill") ?? 0n;
}
