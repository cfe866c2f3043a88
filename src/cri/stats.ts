/**
 * CRI usage figures from a shim's cgroup metrics (cgroups v1 or v2, as the
 * shim's Stats answers them): CPU time, and memory as the kubelet reads it
 * (working set: usage less inactive file pages, as containerd computes it).
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import type { Any } from "@bufbuild/protobuf/wkt";
import { MetricsSchema as V1 } from "../gen/containerd/cgroups/v1/metrics_pb.ts";
import { MetricsSchema as V2 } from "../gen/containerd/cgroups/v2/metrics_pb.ts";

/** The figures of one cgroup, in the CRI's units (nanoseconds, bytes). */
export interface Usage {
  cpuNanos: bigint;
  memoryUsage: bigint;
  workingSet: bigint;
  rss: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
}

/** The figures in a Stats answer; undefined when it holds metrics of another kind. */
export function usageOf(data: Any | undefined): Usage | undefined {
  if (data === undefined) return undefined;
  if (data.typeUrl.endsWith("io.containerd.cgroups.v1.Metrics")) {
    const m = fromBinary(V1, data.value);
    const usage = m.memory?.usage?.usage ?? 0n;
    const inactive = m.memory?.totalInactiveFile ?? 0n;
    return {
      cpuNanos: m.cpu?.usage?.total ?? 0n,
      memoryUsage: usage,
      workingSet: usage > inactive ? usage - inactive : 0n,
      rss: m.memory?.totalRss ?? 0n,
      pageFaults: m.memory?.totalPgFault ?? 0n,
      majorPageFaults: m.memory?.totalPgMajFault ?? 0n,
    };
  }
  if (data.typeUrl.endsWith("io.containerd.cgroups.v2.Metrics")) {
    const m = fromBinary(V2, data.value);
    const usage = m.memory?.usage ?? 0n;
    const inactive = m.memory?.inactiveFile ?? 0n;
    return {
      cpuNanos: (m.cpu?.usageUsec ?? 0n) * 1000n,
      memoryUsage: usage,
      workingSet: usage > inactive ? usage - inactive : 0n,
      rss: m.memory?.anon ?? 0n,
      pageFaults: m.memory?.pgfault ?? 0n,
      majorPageFaults: m.memory?.pgmajfault ?? 0n,
    };
  }
  return undefined;
}

/** The CRI's cpu and memory messages (as init shapes) for `u` taken at `timestamp`. */
export function criUsage(u: Usage, timestamp: bigint) {
  const v = (value: bigint) => ({ value });
  return {
    cpu: { timestamp, usageCoreNanoSeconds: v(u.cpuNanos) },
    memory: {
      timestamp,
      workingSetBytes: v(u.workingSet),
      usageBytes: v(u.memoryUsage),
      rssBytes: v(u.rss),
      pageFaults: v(u.pageFaults),
      majorPageFaults: v(u.majorPageFaults),
    },
  };
}

/** The sum of several cgroups' figures (a pod: its sandbox and its containers). */
export function sumUsage(all: Usage[]): Usage {
  const out: Usage = {
    cpuNanos: 0n,
    memoryUsage: 0n,
    workingSet: 0n,
    rss: 0n,
    pageFaults: 0n,
    majorPageFaults: 0n,
  };
  for (const u of all) {
    for (const k of Object.keys(out) as (keyof Usage)[]) out[k] += u[k];
  }
  return out;
}
