/**
 * Tracing end to end: a daemon configured as containerd is
 * (`[plugins."io.containerd.tracing.processor.v1.otlp"] endpoint`) exports
 * to an OTLP/HTTP receiver in this test, its shim gets the settings from
 * it, and `berth --trace run --rm` exports the client's spans there too.
 * The spans must be OTLP/JSON as the spec encodes it, share one trace id,
 * and nest shim -> daemon -> client.
 *
 * Needs `make build` first (bin/berth).
 */
import assert from "node:assert/strict";
import { clearNamespace, makeRootDir, privateCopy } from "./support/berth.ts";
import { spawnDaemonWithConfig, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { runTool } from "./support/tool.ts";
import { startReceiver } from "../src/tracing/receiver.ts";
import type { ReceivedSpan } from "../src/tracing/mod.ts";

const copy = await privateCopy();
const BERTH = copy.path;

const HEX32 = /^[0-9a-f]{32}$/;
const HEX16 = /^[0-9a-f]{16}$/;
const NANOS = /^[0-9]{19}$/;

/** Checks one ExportTraceServiceRequest body against the OTLP/JSON encoding. */
function checkEncoding(body: unknown): void {
  const rs = (body as { resourceSpans: unknown[] }).resourceSpans;
  assert.ok(Array.isArray(rs) && rs.length > 0, "resourceSpans");
  // deno-lint-ignore no-explicit-any -- walking untyped JSON as the test checks it
  for (const r of rs as Array<Record<string, any>>) {
    const attrs = r.resource.attributes as Array<{ key: string; value: { stringValue?: string } }>;
    const name = attrs.find((a) => a.key === "service.name")?.value.stringValue;
    assert.ok(typeof name === "string" && name !== "", "resource service.name");
    for (const ss of r.scopeSpans) {
      assert.equal(ss.scope.name, "berth");
      for (const s of ss.spans) {
        assert.match(s.traceId, HEX32, "traceId: 32 hex digits");
        assert.match(s.spanId, HEX16, "spanId: 16 hex digits");
        if ("parentSpanId" in s) assert.match(s.parentSpanId, HEX16, "parentSpanId");
        assert.match(s.startTimeUnixNano, NANOS, "startTimeUnixNano: a decimal string");
        assert.match(s.endTimeUnixNano, NANOS, "endTimeUnixNano: a decimal string");
        assert.ok(BigInt(s.endTimeUnixNano) >= BigInt(s.startTimeUnixNano), "end after start");
        assert.ok([1, 2, 3].includes(s.kind), `kind ${s.kind} is a SpanKind number`);
        assert.ok([0, 1, 2].includes(s.status.code), "status.code");
        assert.equal(typeof s.name, "string");
      }
    }
  }
}

/** The names of `s` and its ancestors, innermost first, as "name [service] kind". */
function chain(spans: readonly ReceivedSpan[], s: ReceivedSpan): string[] {
  const byId = new Map(spans.map((x) => [x.spanId, x]));
  const out: string[] = [];
  for (let cur: ReceivedSpan | undefined = s; cur !== undefined; cur = byId.get(cur.parentSpanId)) {
    out.push(`${cur.name} [${cur.service}] ${cur.kind}`);
    if (cur.parentSpanId === "") break;
    assert.ok(byId.has(cur.parentSpanId), `parent of ${cur.name} [${cur.service}] was received`);
  }
  return out;
}

Deno.test("tracing: client, daemon, shim and runc spans over OTLP/HTTP JSON, nested in one trace", async () => {
  const receiver = await startReceiver();
  const dir = await Deno.makeTempDir({ prefix: "berth-tracing-" });
  const ns = `tr${crypto.randomUUID().slice(0, 8)}`;
  const address = `${dir}/state/berth.sock`;
  const daemon = await spawnDaemonWithConfig(
    dir,
    [
      "version = 2",
      `[plugins."io.containerd.tracing.processor.v1.otlp"]`,
      `  endpoint = "127.0.0.1:${receiver.port}"`,
      `  protocol = "http/json"`,
      `  insecure = true`,
      `[plugins."io.containerd.internal.v1.tracing"]`,
      `  sampling_ratio = 1.0`,
      `  service_name = "berth-under-test"`,
      "",
    ].join("\n"),
    address,
    BERTH,
  );
  const b = (args: string[], env?: Record<string, string>) =>
    runTool(BERTH, ["--address", address, "-n", ns, ...args], { env, timeoutMs: 60_000 });
  let cleared: { afterStop(): Promise<void> } | undefined;
  try {
    await waitForSocket(`${address}.ttrpc`, daemon);
    const root = await makeRootDir(dir);
    const imp = await b(["images", "import", "--from-dir", root, "tr:1", "--cmd", "true"]);
    assert.equal(imp.code, 0, imp.stderr);

    const run = await b(["--trace", "run", "--rm", "docker.io/library/tr:1", "t1", "echo", "hi"], {
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${receiver.port}`,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "hi\n");
    // The printed tree has every process's spans.
    assert.match(run.stderr, /^trace [0-9a-f]{32} \(\d+ spans\)$/m);
    assert.match(run.stderr, /runc create \[containerd-shim-berth-v2\]/);
    assert.match(run.stderr, /containerd\.services\.tasks\.v1\.Tasks\/Create \[berth-under-test\]/);

    const clientRoot = () =>
      receiver.spans.find((s) => s.service === "berth-client" && s.parentSpanId === "");
    await receiver.settle(300, 10_000, (spans) =>
      clientRoot() !== undefined &&
      spans.some((s) => s.name === "runc delete" && s.traceId === clientRoot()!.traceId));
    const top = clientRoot();
    assert.ok(top !== undefined, "the client's root span was exported");
    assert.match(top.name, /^berth run --rm docker\.io\/library\/tr:1 t1 echo hi$/);
    const trace = receiver.spans.filter((s) => s.traceId === top.traceId);
    const services = new Set(trace.map((s) => s.service));
    assert.deepEqual(
      [...services].sort(),
      ["berth-client", "berth-under-test", "containerd-shim-berth-v2"],
    );
    for (const body of receiver.bodies) checkEncoding(body);

    const runcCreate = trace.find((s) => s.name === "runc create");
    assert.ok(runcCreate !== undefined, "the shim's runc create span");
    assert.deepEqual(chain(trace, runcCreate), [
      "runc create [containerd-shim-berth-v2] 1",
      "containerd.task.v2.Task/Create [containerd-shim-berth-v2] 2",
      "containerd.task.v2.Task/Create [berth-under-test] 3",
      "containerd.services.tasks.v1.Tasks/Create [berth-under-test] 2",
      "containerd.services.tasks.v1.Tasks/Create [berth-client] 3",
      `${top.name} [berth-client] 1`,
    ]);
    for (
      const name of ["runc start", "runc delete", "mount rootfs", "io setup", "bundle", "shim"]
    ) {
      assert.ok(trace.some((s) => s.name === name), `span ${name}`);
    }
    // Every span of the trace nests inside its parent's time (clocks of one host).
    const byId = new Map(trace.map((s) => [s.spanId, s]));
    for (const s of trace) {
      const p = byId.get(s.parentSpanId);
      if (p === undefined || s.kind === 2) continue; // a server span may start as its client's ends
      assert.ok(s.start >= p.start, `${s.name} starts inside ${p.name}`);
    }

    // sampling_ratio = 1: a call that arrives with no traceparent starts a trace of its own.
    const before = receiver.spans.length;
    assert.equal((await b(["version"])).code, 0);
    await receiver.settle(
      300,
      5000,
      (spans) => spans.slice(before).some((s) => s.name.endsWith("Version/Version")),
    );
    const version = receiver.spans.slice(before).find((s) => s.name.endsWith("Version/Version"));
    assert.ok(version !== undefined, "a root span for the unsampled client's call");
    assert.equal(version.parentSpanId, "");
    assert.equal(version.service, "berth-under-test");
    cleared = await clearNamespace((args) => runTool(BERTH, ["--address", address, ...args]), ns);
  } finally {
    await stopDaemon(daemon);
    await cleared?.afterStop();
    await receiver.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});

Deno.test("tracing: a protocol berth does not export is a clear config error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-tracing-bad-" });
  try {
    const d = await spawnDaemonWithConfig(
      dir,
      `version = 2\n[plugins."io.containerd.tracing.processor.v1.otlp"]\n  endpoint = "127.0.0.1:4318"\n  protocol = "grpc"\n`,
      `${dir}/state/b.sock`,
      BERTH,
    );
    const status = await d.done;
    assert.notEqual(status.code, 0);
    assert.match(d.log(), /tracing config: OTLP protocol \\?"grpc\\?" is not supported by berth/);
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
});
