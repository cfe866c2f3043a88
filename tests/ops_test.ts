/**
 * Operability end to end against bin/berth: the metrics endpoint scraped by
 * Debian's Prometheus server and linted by promtool, and the debug socket's
 * heap snapshot, CPU profile and in-flight list through `berth debug`.
 * Needs `make build` first (bin/berth), and the prometheus package.
 */
import assert from "node:assert/strict";
import { spawn } from "../src/spawn/mod.ts";
import { privateBerth } from "./support/binary.ts";
import { spawnDaemonWithConfig, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { mountsUnder } from "./support/mounts.ts";
import { runTool, type ToolResult } from "./support/tool.ts";

const bin = await privateBerth();
globalThis.addEventListener("unload", () => bin.remove());
const BERTH = bin.path;

function ok(r: ToolResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** A free loopback port (for prometheus, which cannot report a port 0 it bound). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function until<T>(what: string, f: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const v = await f();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${what}: not within ${ms} ms${last ? ` (last error: ${last})` : ""}`);
}

/**
 * What promtool's linter says of containerd's own metric names, which berth
 * keeps: the cgroup collector's CPU figures are in nanoseconds.
 */
const CONTAINERD_NAMING =
  /^container_(cpu_total|cpu_kernel|cpu_user|per_cpu|cpu_throttled_time)_nanoseconds use base unit "seconds" instead of "nanoseconds"$/;

Deno.test("ops: metrics scraped by prometheus and linted by promtool; the debug socket's heap, profile and requests", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "berth-ops-test-" });
  const address = `${dir}/berth.sock`;
  const debugSock = `${dir}/debug.sock`;
  const ns = `op${crypto.randomUUID().slice(0, 8)}`;
  const id = `m-${ns}`;
  const d = await spawnDaemonWithConfig(
    dir,
    `version = 2\n[metrics]\naddress = "127.0.0.1:0"\ngrpc_histogram = true\n[debug]\naddress = "${debugSock}"\n`,
    address,
    BERTH,
  );
  const b = (args: string[]) => runTool(BERTH, ["-a", address, "-n", ns, ...args]);
  let status: Deno.CommandStatus | undefined;
  const children: Deno.ChildProcess[] = [];
  try {
    await waitForSocket(`${address}.ttrpc`, d);
    // The endpoints start after the RPC sockets; "serving..." comes once all listen.
    await until(
      "the daemon to serve",
      () => Promise.resolve(/msg="serving\.\.\."/.test(d.log()) ? true : undefined),
    );
    const port = Number(/msg="serving metrics" address=127\.0\.0\.1:(\d+)/.exec(d.log())?.[1]);
    assert.ok(port > 0, `the daemon logs the port it bound:\n${d.log()}`);
    const url = `http://127.0.0.1:${port}/v1/metrics`;

    // A running task, and calls on both transports (ctr speaks gRPC, berth's client ttrpc).
    const img = `${dir}/img`;
    await Deno.mkdir(`${img}/bin`, { recursive: true });
    await Deno.copyFile("/bin/busybox", `${img}/bin/busybox`);
    for (const a of ["sh", "sleep"]) await Deno.symlink("busybox", `${img}/bin/${a}`);
    ok(await b(["images", "import", "--from-dir", img, "op:1", "--cmd", "sh"]), "import");
    ok(await b(["run", "-d", "docker.io/library/op:1", id, "sleep", "1000"]), "run -d");
    ok(await runTool("ctr", ["-a", address, "version"]), "ctr version");

    await t.step("/v1/metrics: containerd's names, text format and OpenMetrics", async () => {
      const res = await fetch(url);
      assert.equal(res.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
      const text = await res.text();
      const labels = `container_id="${id}",namespace="${ns}"`;
      for (
        const name of [
          "container_cpu_total_nanoseconds",
          "container_memory_usage_usage_bytes",
          "container_pids_current",
        ]
      ) {
        assert.match(text, new RegExp(`^${name}\\{${labels}\\} \\d+$`, "m"), name);
      }
      assert.match(text, new RegExp(`^container_pids_current\\{${labels}\\} 1$`, "m"));
      assert.match(
        text,
        /^grpc_server_handled_total\{grpc_type="unary",grpc_service="containerd\.services\.version\.v1\.Version",grpc_method="Version",grpc_code="OK"\} 1$/m,
      );
      assert.match(
        text,
        /^grpc_server_handling_seconds_bucket\{grpc_type="unary",grpc_service="containerd\.services\.version\.v1\.Version",grpc_method="Version",le="\+Inf"\} 1$/m,
      );
      assert.match(
        text,
        /^ttrpc_server_handled_total\{grpc_type="unary",grpc_service="containerd\.services\.tasks\.v1\.Tasks",grpc_method="Start",grpc_code="OK"\} 1$/m,
      );
      // The missing container's lookup before create counted as NotFound.
      assert.match(
        text,
        /^ttrpc_server_handled_total\{[^}]*grpc_method="Get",grpc_code="NotFound"\} \d+$/m,
      );
      const rss = Number(/^process_resident_memory_bytes (\d+)$/m.exec(text)?.[1]);
      assert.ok(rss > 10e6 && rss < 2e9, `resident memory ${rss}`);
      assert.match(text, /^process_open_fds \d+$/m);
      const start = Number(/^process_start_time_seconds (\S+)$/m.exec(text)?.[1]);
      assert.ok(Math.abs(Date.now() / 1000 - start) < 300, `start time ${start}`);
      assert.match(text, /^berth_build_info\{version="[^"]+",deno="[^"]+"\} 1$/m);

      const lint = await runTool("sh", ["-c", `curl -s ${url} | promtool check metrics`]);
      assert.ok(lint.code === 0 || lint.code === 3, `promtool: parse failure\n${lint.stderr}`);
      const problems = (lint.stdout + lint.stderr).split("\n").filter((l) => l.trim());
      assert.deepEqual(problems.filter((p) => !CONTAINERD_NAMING.test(p)), []);

      const om = await fetch(url, { headers: { accept: "application/openmetrics-text" } });
      assert.match(om.headers.get("content-type") ?? "", /^application\/openmetrics-text/);
      const omText = await om.text();
      assert.ok(omText.endsWith("# EOF\n"));
      assert.match(omText, /^# TYPE grpc_server_handled counter$/m);
      assert.equal((await fetch(url.replace("/v1/metrics", "/nope"))).status, 404);
    });

    await t.step("a Prometheus server scrapes it and answers queries on the series", async () => {
      const promPort = freePort();
      await Deno.writeTextFile(
        `${dir}/prometheus.yml`,
        [
          "global:",
          "  scrape_interval: 1s",
          "scrape_configs:",
          "  - job_name: berth",
          "    metrics_path: /v1/metrics",
          "    static_configs:",
          `      - targets: ["127.0.0.1:${port}"]`,
          "",
        ].join("\n"),
      );
      const prom = spawn("prometheus", [
        `--config.file=${dir}/prometheus.yml`,
        `--storage.tsdb.path=${dir}/prometheus`,
        `--web.listen-address=127.0.0.1:${promPort}`,
      ], { stdout: "null", stderr: "null" });
      children.push(prom);
      const query = async (q: string) => {
        const r = await fetch(
          `http://127.0.0.1:${promPort}/api/v1/query?query=${encodeURIComponent(q)}`,
        );
        const body = await r.json() as {
          data: { result: Array<{ metric: Record<string, string>; value: [number, string] }> };
        };
        return body.data.result.length > 0 ? body.data.result : undefined;
      };
      const cpu = await until(
        "container_cpu_total_nanoseconds in prometheus",
        () => query(`container_cpu_total_nanoseconds{container_id="${id}"}`),
      );
      assert.equal(cpu[0].metric.namespace, ns);
      assert.equal(cpu[0].metric.job, "berth");
      const up = await until("up", () => query(`up{job="berth"}`));
      assert.equal(up[0].value[1], "1");
      const handled = await until(
        "grpc_server_handled_total",
        () => query(`grpc_server_handled_total{grpc_method="Version"}`),
      );
      assert.equal(handled[0].metric.grpc_code, "OK");
      await until("process_resident_memory_bytes", () => query("process_resident_memory_bytes"));
      prom.kill("SIGTERM");
      assert.ok((await prom.status).success, "prometheus stopped cleanly");
    });

    await t.step("berth debug: requests in flight, a heap snapshot, a CPU profile", async () => {
      assert.equal((await Deno.stat(debugSock)).mode! & 0o777, 0o600);
      const dbg = (args: string[]) => runTool(BERTH, ["debug", "--socket", debugSock, ...args]);
      // A call that stays in flight: an event subscription.
      const events = spawn(BERTH, ["-a", address, "events"], { stdout: "null", stderr: "null" });
      children.push(events);
      const slow = await until("the subscription in flight", async () => {
        const list = JSON.parse(
          ok(await dbg(["requests", "--format", "json"]), "requests"),
        ) as Array<
          { transport: string; service: string; method: string; ageSeconds: number }
        >;
        return list.find((r) => r.method === "Subscribe" && r.ageSeconds > 0.5);
      });
      assert.equal(slow.service, "containerd.services.events.v1.Events");
      assert.equal(slow.transport, "ttrpc");
      assert.match(
        ok(await dbg(["requests"]), "requests table"),
        /\ds\s+ttrpc\s+containerd\.services\.events\.v1\.Events\/Subscribe/,
      );
      events.kill("SIGTERM");
      await events.status;

      const heap = `${dir}/daemon.heapsnapshot`;
      ok(await dbg(["heap", "-o", heap]), "heap");
      const snap = JSON.parse(await Deno.readTextFile(heap));
      for (const k of ["snapshot", "nodes", "edges", "strings"]) assert.ok(k in snap, k);
      assert.ok(snap.snapshot.node_count > 1000);

      const prof = `${dir}/daemon.cpuprofile`;
      ok(await dbg(["profile", "--seconds", "1", "-o", prof]), "profile");
      const p = JSON.parse(await Deno.readTextFile(prof));
      for (const k of ["nodes", "startTime", "endTime", "samples", "timeDeltas"]) {
        assert.ok(k in p, k);
      }
      assert.ok(p.endTime - p.startTime >= 900_000, "about a second, in microseconds");

      const bad = await dbg(["profile", "--seconds", "9999"]);
      assert.equal(bad.code, 2, bad.stderr);
      assert.match(bad.stderr, /seconds must be in \(0, 300\]/);
      const none = await runTool(BERTH, ["debug", "--socket", `${dir}/none.sock`, "requests"]);
      assert.equal(none.code, 8);
      assert.match(none.stderr, /cannot reach the debug socket/);
    });

    ok(await b(["tasks", "kill", "-s", "SIGKILL", id]), "kill");
    await until(
      "the task to stop",
      async () => /STOPPED/.test(ok(await b(["tasks", "ls"]), "tasks ls")) ? true : undefined,
    );
    // `tasks delete` exits with the task's status, as ctr's: 128+9 for the SIGKILL.
    assert.equal((await b(["tasks", "delete", id])).code, 137);
    ok(await b(["containers", "rm", id]), "containers rm");
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGKILL");
      } catch { /* already gone */ }
      await c.status;
    }
    status = await stopDaemon(d);
    await assert.rejects(Deno.stat(debugSock), Deno.errors.NotFound, "the debug socket is removed");
    assert.deepEqual(mountsUnder(dir), []);
    await Deno.remove(`/run/berth/runc/${ns}`, { recursive: true }).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(status?.success, `the daemon stops cleanly:\n${d.log()}`);
});
