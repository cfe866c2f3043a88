import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { Code } from "../errdefs/mod.ts";
import { MetricsSchema } from "../gen/containerd/cgroups/v1/metrics_pb.ts";
import type { MethodEntry } from "../rpc/mod.ts";
import { cgroupFamilies, processFamilies, render, RpcMetrics, wantsOpenMetrics } from "./mod.ts";

const entry = (method: string, kind: MethodEntry["kind"] = "unary") =>
  ({ service: "containerd.services.tasks.v1.Tasks", method, kind }) as MethodEntry;

Deno.test("metrics: text format and OpenMetrics from the same families, escaped", () => {
  const fams = [
    {
      name: "x_requests_total",
      help: "Requests\\served\nhere.",
      type: "counter" as const,
      samples: [{ labels: { path: 'a"b\\c\nd' }, value: 3 }],
    },
    { name: "x_empty", help: "none", type: "gauge" as const, samples: [] },
    { name: "x_up", help: "up", type: "gauge" as const, samples: [{ labels: {}, value: 1 }] },
  ];
  assert.equal(
    render(fams, false),
    [
      "# HELP x_requests_total Requests\\\\served\\nhere.",
      "# TYPE x_requests_total counter",
      'x_requests_total{path="a\\"b\\\\c\\nd"} 3',
      "# HELP x_up up",
      "# TYPE x_up gauge",
      "x_up 1",
      "",
    ].join("\n"),
  );
  const om = render(fams, true);
  assert.match(om, /^# TYPE x_requests counter\nx_requests_total\{/m);
  assert.ok(om.endsWith("x_up 1\n# EOF\n"));
  assert.ok(wantsOpenMetrics("application/openmetrics-text;version=1.0.0,text/plain;q=0.5"));
  assert.ok(!wantsOpenMetrics("text/plain") && !wantsOpenMetrics(null));
});

Deno.test("metrics: RPC counters per method and code; the histogram only when asked", () => {
  const m = new RpcMetrics("grpc", true);
  m.observe(entry("Start"))(Code.OK);
  m.observe(entry("Start"))(Code.NotFound);
  const open = m.observe(entry("Wait", "server_streaming"));
  const text = render(m.families(), false);
  assert.match(
    text,
    /^grpc_server_started_total\{grpc_type="unary",grpc_service="containerd\.services\.tasks\.v1\.Tasks",grpc_method="Start"\} 2$/m,
  );
  assert.match(text, /grpc_method="Start",grpc_code="OK"\} 1$/m);
  assert.match(text, /grpc_method="Start",grpc_code="NotFound"\} 1$/m);
  assert.match(text, /^grpc_server_started_total\{grpc_type="server_stream",[^}]*"Wait"\} 1$/m);
  assert.doesNotMatch(text, /grpc_method="Wait",grpc_code/, "a call in flight is not handled yet");
  assert.match(text, /^grpc_server_handling_seconds_bucket\{[^}]*"Start",le="0\.005"\} 2$/m);
  assert.match(text, /^grpc_server_handling_seconds_bucket\{[^}]*"Start",le="\+Inf"\} 2$/m);
  assert.match(text, /^grpc_server_handling_seconds_count\{[^}]*"Start"\} 2$/m);
  open(Code.Canceled);
  assert.match(render(m.families(), false), /"Wait",grpc_code="Canceled"\} 1$/m);
  const plain = new RpcMetrics("ttrpc", false);
  plain.observe(entry("Start"))(Code.OK);
  const t = render(plain.families(), false);
  assert.match(t, /^ttrpc_server_handled_total\{[^}]*\} 1$/m);
  assert.doesNotMatch(t, /handling_seconds/);
});

Deno.test("metrics: cgroup v1 figures under containerd's names and labels", () => {
  const metrics = create(MetricsSchema, {
    cpu: { usage: { total: 5n, perCpu: [2n, 3n] }, throttling: { periods: 7n } },
    memory: { rss: 4096n, usage: { usage: 8192n, limit: 1n << 40n } },
    pids: { current: 2n, limit: 0n },
    blkio: {
      ioServiceBytesRecursive: [{ op: "Read", device: "", major: 8n, minor: 0n, value: 512n }],
    },
  });
  const text = render(cgroupFamilies([{ id: "c1", namespace: "ns", metrics }]), false);
  const l = 'container_id="c1",namespace="ns"';
  for (
    const line of [
      `container_cpu_total_nanoseconds{${l}} 5`,
      `container_per_cpu_nanoseconds{${l},cpu="1"} 3`,
      `container_cpu_throttle_periods_total{${l}} 7`,
      `container_memory_rss_bytes{${l}} 4096`,
      `container_memory_usage_usage_bytes{${l}} 8192`,
      `container_memory_usage_limit_bytes{${l}} 1099511627776`,
      `container_pids_current{${l}} 2`,
      `container_blkio_io_service_bytes_recursive_bytes{${l},op="Read",device="",major="8",minor="0"} 512`,
    ]
  ) assert.ok(text.includes(`\n${line}\n`), line);
  assert.match(text, /^# TYPE container_cpu_throttle_periods_total counter$/m);
  assert.match(text, /^# TYPE container_memory_rss_bytes gauge$/m);
  assert.doesNotMatch(text, /hugetlb/, "no samples, no family");
});

Deno.test("metrics: the process' own figures", () => {
  const text = render(processFamilies(), false);
  const rss = Number(/^process_resident_memory_bytes (\d+)$/m.exec(text)?.[1]);
  assert.ok(rss > 1e6, text);
  const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)?.[1]);
  assert.ok(start <= Date.now() / 1000 && start > Date.now() / 1000 - 3600, String(start));
  assert.match(text, /^process_open_fds \d+$/m);
  assert.match(text, /^process_cpu_seconds_total \S+$/m);
});
