/**
 * Per-task cgroup figures under the names containerd's cgroups v1 collector
 * gives them: `container_<name>_<unit>` with `container_id` and `namespace`
 * labels (plus `cpu`, `op`/`device`/`major`/`minor`, `page` where
 * containerd has them), from the io.containerd.cgroups.v1.Metrics a shim's
 * Stats returns. containerd declares all of them gauges; the cumulative ones
 * whose name ends in `_total` are declared counters here, which the
 * exposition linters require of that suffix and which they are. The one
 * `_total` that is no count, blkio_io_queued_recursive (requests queued now),
 * stays a gauge under containerd's name (`promtool check metrics` notes it
 * when the kernel has that file; this host's has not). `memory_oom_total`
 * is the cgroup's own oom_kill count (containerd counts OOM events itself).
 * @module
 */

import type * as v1 from "../gen/containerd/cgroups/v1/metrics_pb.ts";
import type { Family, Sample } from "./exposition.ts";

type Values = (m: v1.Metrics) => Array<{ v: bigint | number; l?: Record<string, string> }>;

interface Def {
  name: string;
  help: string;
  counter?: boolean;
  values: Values;
}

const one = (v: bigint | undefined) => v === undefined ? [] : [{ v }];

function blkio(entries: v1.BlkIOEntry[] | undefined) {
  return (entries ?? []).map((e) => ({
    v: e.value,
    l: { op: e.op, device: e.device, major: String(e.major), minor: String(e.minor) },
  }));
}

type MemKey = keyof Omit<
  v1.MemoryStat,
  "$typeName" | "$unknown" | "usage" | "swap" | "kernel" | "kernelTcp"
>;

/** containerd's memory_* rows: name, help, the MemoryStat field. */
const MEMORY: Array<[string, string, MemKey]> = [
  ["cache", "The cache amount used", "cache"],
  ["rss", "The rss amount used", "rss"],
  ["rss_huge", "The rss_huge amount used", "rssHuge"],
  ["mapped_file", "The mapped_file amount used", "mappedFile"],
  ["dirty", "The dirty amount", "dirty"],
  ["writeback", "The writeback amount", "writeback"],
  ["pgpgin", "The pgpgin amount", "pgPgIn"],
  ["pgpgout", "The pgpgout amount", "pgPgOut"],
  ["pgfault", "The pgfault amount", "pgFault"],
  ["pgmajfault", "The pgmajfault amount", "pgMajFault"],
  ["inactive_anon", "The inactive_anon amount", "inactiveAnon"],
  ["active_anon", "The active_anon amount", "activeAnon"],
  ["inactive_file", "The inactive_file amount", "inactiveFile"],
  ["active_file", "The active_file amount", "activeFile"],
  ["unevictable", "The unevictable amount", "unevictable"],
  ["hierarchical_memory_limit", "The hierarchical_memory_limit amount", "hierarchicalMemoryLimit"],
  ["hierarchical_memsw_limit", "The hierarchical_memsw_limit amount", "hierarchicalSwapLimit"],
  ["total_cache", "The total_cache amount used", "totalCache"],
  ["total_rss", "The total_rss amount used", "totalRss"],
  ["total_rss_huge", "The total_rss_huge amount used", "totalRssHuge"],
  ["total_mapped_file", "The total_mapped_file amount used", "totalMappedFile"],
  ["total_dirty", "The total_dirty amount", "totalDirty"],
  ["total_writeback", "The total_writeback amount", "totalWriteback"],
  ["total_pgpgin", "The total_pgpgin amount", "totalPgPgIn"],
  ["total_pgpgout", "The total_pgpgout amount", "totalPgPgOut"],
  ["total_pgfault", "The total_pgfault amount", "totalPgFault"],
  ["total_pgmajfault", "The total_pgmajfault amount", "totalPgMajFault"],
  ["total_inactive_anon", "The total_inactive_anon amount", "totalInactiveAnon"],
  ["total_active_anon", "The total_active_anon amount", "totalActiveAnon"],
  ["total_inactive_file", "The total_inactive_file amount", "totalInactiveFile"],
  ["total_active_file", "The total_active_file amount", "totalActiveFile"],
  ["total_unevictable", "The total_unevictable amount", "totalUnevictable"],
];

const ENTRIES = [["usage", "usage"], ["swap", "swap"], ["kernel", "kernel"], [
  "kerneltcp",
  "kernelTcp",
]] as const;

const DEFS: Def[] = [
  {
    name: "cpu_total_nanoseconds",
    help: "The total cpu time",
    values: (m) => one(m.cpu?.usage?.total),
  },
  {
    name: "cpu_kernel_nanoseconds",
    help: "The total kernel cpu time",
    values: (m) => one(m.cpu?.usage?.kernel),
  },
  {
    name: "cpu_user_nanoseconds",
    help: "The total user cpu time",
    values: (m) => one(m.cpu?.usage?.user),
  },
  {
    name: "per_cpu_nanoseconds",
    help: "The total cpu time per cpu",
    values: (m) => (m.cpu?.usage?.perCpu ?? []).map((v, i) => ({ v, l: { cpu: String(i) } })),
  },
  {
    name: "cpu_throttle_periods_total",
    help: "The total cpu throttle periods",
    counter: true,
    values: (m) => one(m.cpu?.throttling?.periods),
  },
  {
    name: "cpu_throttled_periods_total",
    help: "The total cpu throttled periods",
    counter: true,
    values: (m) => one(m.cpu?.throttling?.throttledPeriods),
  },
  {
    name: "cpu_throttled_time_nanoseconds",
    help: "The total cpu throttled time",
    values: (m) => one(m.cpu?.throttling?.throttledTime),
  },
  ...MEMORY.map(([name, help, key]): Def => ({
    name: `memory_${name}_bytes`,
    help,
    values: (m) => one(m.memory?.[key]),
  })),
  ...ENTRIES.flatMap(([name, key]): Def[] => [
    {
      name: `memory_${name}_failcnt_total`,
      help: `The ${name} failcnt`,
      counter: true,
      values: (m) => one(m.memory?.[key]?.failcnt),
    },
    {
      name: `memory_${name}_limit_bytes`,
      help: `The ${name} limit`,
      values: (m) => one(m.memory?.[key]?.limit),
    },
    {
      name: `memory_${name}_max_bytes`,
      help: `The ${name} maximum usage`,
      values: (m) => one(m.memory?.[key]?.max),
    },
    {
      name: `memory_${name}_usage_bytes`,
      help: `The ${name} usage`,
      values: (m) => one(m.memory?.[key]?.usage),
    },
  ]),
  {
    name: "memory_oom_total",
    help: "The number of times a container has received an oom event",
    counter: true,
    values: (m) => one(m.memoryOomControl?.oomKill),
  },
  {
    name: "pids_limit",
    help: "The limit to the number of pids allowed",
    values: (m) => one(m.pids?.limit),
  },
  {
    name: "pids_current",
    help: "The current number of pids",
    values: (m) => one(m.pids?.current),
  },
  {
    name: "blkio_io_merged_recursive_total",
    help: "The blkio io merged recursive",
    counter: true,
    values: (m) => blkio(m.blkio?.ioMergedRecursive),
  },
  {
    name: "blkio_io_queued_recursive_total",
    help: "The blkio io queued recursive",
    values: (m) => blkio(m.blkio?.ioQueuedRecursive),
  },
  {
    name: "blkio_io_service_bytes_recursive_bytes",
    help: "The blkio io service bytes recursive",
    values: (m) => blkio(m.blkio?.ioServiceBytesRecursive),
  },
  {
    name: "blkio_io_service_time_recursive_total",
    help: "The blkio io service time recursive",
    counter: true,
    values: (m) => blkio(m.blkio?.ioServiceTimeRecursive),
  },
  {
    name: "blkio_io_serviced_recursive_total",
    help: "The blkio io serviced recursive",
    counter: true,
    values: (m) => blkio(m.blkio?.ioServicedRecursive),
  },
  {
    name: "blkio_io_time_recursive_total",
    help: "The blkio io time recursive",
    counter: true,
    values: (m) => blkio(m.blkio?.ioTimeRecursive),
  },
  {
    name: "blkio_sectors_recursive_total",
    help: "The blkio sectors recursive",
    counter: true,
    values: (m) => blkio(m.blkio?.sectorsRecursive),
  },
  {
    name: "hugetlb_usage_bytes",
    help: "The hugetlb usage",
    values: (m) => m.hugetlb.map((h) => ({ v: h.usage, l: { page: h.pagesize } })),
  },
  {
    name: "hugetlb_failcnt_total",
    help: "The hugetlb failcnt",
    counter: true,
    values: (m) => m.hugetlb.map((h) => ({ v: h.failcnt, l: { page: h.pagesize } })),
  },
  {
    name: "hugetlb_max_bytes",
    help: "The hugetlb maximum usage",
    values: (m) => m.hugetlb.map((h) => ({ v: h.max, l: { page: h.pagesize } })),
  },
];

/** One task's figures, as its shim reported them. */
export interface TaskMetrics {
  id: string;
  namespace: string;
  metrics: v1.Metrics;
}

/** The container_* families of every task given. */
export function cgroupFamilies(tasks: readonly TaskMetrics[]): Family[] {
  return DEFS.map((d) => {
    const samples: Sample[] = [];
    for (const t of tasks) {
      for (const { v, l } of d.values(t.metrics)) {
        samples.push({
          labels: { container_id: t.id, namespace: t.namespace, ...l },
          value: Number(v),
        });
      }
    }
    return {
      name: `container_${d.name}`,
      help: d.help,
      type: d.counter ? "counter" : "gauge",
      samples,
    };
  });
}
