/**
 * The daemon's own process figures under the names Prometheus' process
 * collector gives them (what containerd exposes from Go's client library),
 * read from /proc/self at scrape time, and berth's build info.
 * @module
 */

import { procStat } from "../procfs/mod.ts";
import { VERSION } from "../version.ts";
import type { Family } from "./exposition.ts";

const TICKS = 100; // USER_HZ on Linux
const PAGE = 4096;

function gauge(name: string, help: string, value: number): Family {
  return { name, help, type: "gauge", samples: [{ labels: {}, value }] };
}

/** process_* families, and berth_build_info. */
export function processFamilies(): Family[] {
  const f = procStat("self") ?? [];
  const utime = Number(f[11]);
  const stime = Number(f[12]);
  const startTicks = Number(f[19]);
  const vsize = Number(f[20]);
  const rss = Number(f[21]) * PAGE;
  const btime = Number(/^btime (\d+)$/m.exec(Deno.readTextFileSync("/proc/stat"))?.[1] ?? 0);
  let fds = 0;
  for (const _ of Deno.readDirSync("/proc/self/fd")) fds++;
  const limits = Deno.readTextFileSync("/proc/self/limits");
  const maxFds = Number(/^Max open files\s+(\d+)/m.exec(limits)?.[1] ?? NaN);
  const vmax = /^Max address space\s+(\S+)/m.exec(limits)?.[1];
  return [
    {
      name: "process_cpu_seconds_total",
      help: "Total user and system CPU time spent in seconds.",
      type: "counter",
      samples: [{ labels: {}, value: (utime + stime) / TICKS }],
    },
    gauge("process_open_fds", "Number of open file descriptors.", fds),
    gauge("process_max_fds", "Maximum number of open file descriptors.", maxFds),
    gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", vsize),
    gauge(
      "process_virtual_memory_max_bytes",
      "Maximum amount of virtual memory available in bytes.",
      // Unlimited is RLIM_INFINITY, as Go's collector reports it.
      vmax === undefined || vmax === "unlimited" ? 2 ** 64 : Number(vmax),
    ),
    gauge("process_resident_memory_bytes", "Resident memory size in bytes.", rss),
    gauge(
      "process_start_time_seconds",
      "Start time of the process since unix epoch in seconds.",
      btime + startTicks / TICKS,
    ),
    gauge(
      "berth_js_heap_used_bytes",
      "Bytes of the V8 heap in use (Deno.memoryUsage().heapUsed).",
      Deno.memoryUsage().heapUsed,
    ),
    {
      name: "berth_build_info",
      help: "berth's version, as a label; the value is always 1.",
      type: "gauge",
      samples: [{ labels: { version: VERSION, deno: Deno.version.deno }, value: 1 }],
    },
  ];
}
