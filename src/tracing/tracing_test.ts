import assert from "node:assert/strict";
import {
  BatchSink,
  buildTree,
  checkProtocol,
  decodeRequest,
  encodeSpans,
  FLAG_SAMPLED,
  formatTraceparent,
  formatTree,
  MemorySink,
  parseTraceparent,
  routePort,
  routeState,
  settingsEnv,
  settingsFromConfig,
  settingsFromEnv,
  type Span,
  SpanKind,
  Tracer,
  tracesUrl,
  withSpan,
} from "./mod.ts";
import { startReceiver } from "./receiver.ts";

const TID = "4bf92f3577b34da6a3ce929d0e0e4736";
const SID = "00f067aa0ba902b7";

Deno.test("traceparent: the spec's example parses and formats back", () => {
  const h = `00-${TID}-${SID}-01`;
  const c = parseTraceparent(h);
  assert.deepEqual(c, { traceId: TID, spanId: SID, flags: 1 });
  assert.equal(formatTraceparent(c!), h);
  assert.equal(parseTraceparent(`00-${TID}-${SID}-00`)?.flags, 0);
  assert.equal(
    parseTraceparent(` 00-${TID}-${SID}-01 `)?.spanId,
    SID,
    "surrounding space is trimmed",
  );
  assert.equal(parseTraceparent(h, "berth=1234, x=y")?.state, "berth=1234, x=y");
});

Deno.test("traceparent: invalid headers are ignored", () => {
  const bad = [
    "",
    "garbage",
    `ff-${TID}-${SID}-01`, // version ff is invalid
    `00-${TID.toUpperCase()}-${SID}-01`, // upper-case hex
    `00-${"0".repeat(32)}-${SID}-01`, // all-zero trace id
    `00-${TID}-${"0".repeat(16)}-01`, // all-zero parent id
    `00-${TID}-${SID}-01-extra`, // version 00 has exactly four fields
    `00-${TID.slice(1)}-${SID}-01`, // short trace id
    `00-${TID}-${SID}-1`, // short flags
    `00_${TID}-${SID}-01`, // wrong separator
    `0g-${TID}-${SID}-01`, // not hex
  ];
  for (const h of bad) assert.equal(parseTraceparent(h), undefined, h);
  assert.equal(parseTraceparent(undefined), undefined);
});

Deno.test("traceparent: a later version is read by its first four fields", () => {
  assert.equal(parseTraceparent(`01-${TID}-${SID}-01-whatever`)?.traceId, TID);
  assert.equal(parseTraceparent(`01-${TID}-${SID}-01x`), undefined);
});

Deno.test("tracer: incoming spans follow the caller's sampled flag; the ratio decides new traces", () => {
  const sink = new MemorySink();
  const off = new Tracer({ service: "s", sinks: [sink] });
  assert.equal(off.incoming("m", `00-${TID}-${SID}-00`), undefined, "unsampled parent");
  assert.equal(off.incoming("m", undefined), undefined, "ratio 0: no new traces");
  assert.equal(off.incoming("m", "junk"), undefined, "a bad header starts no trace at ratio 0");
  const s = off.incoming("m", `00-${TID}-${SID}-01`, "berth=9")!;
  assert.equal(s.traceId, TID);
  assert.equal(s.parentSpanId, SID);
  assert.equal(s.kind, SpanKind.Server);
  assert.equal(s.flags & FLAG_SAMPLED, 1);
  const c = s.child("runc create");
  assert.equal(c.parentSpanId, s.spanId);
  assert.equal(c.state, "berth=9", "the trace state travels to children");
  c.finish();
  s.finish(new Error("boom"));
  s.finish(); // a second end is ignored
  assert.deepEqual(sink.spans.map((x) => x.name), ["runc create", "m"]);
  assert.equal(sink.spans[1].statusCode, 2);
  assert.equal(sink.spans[1].statusMessage, "boom");
  const all = new Tracer({ service: "s", ratio: 1 });
  const root = all.incoming("m", undefined)!;
  assert.equal(root.parentSpanId, undefined);
  assert.match(root.traceId, /^[0-9a-f]{32}$/);
  assert.match(root.spanId, /^[0-9a-f]{16}$/);
  const half = new Tracer({ service: "s", ratio: 0.5 });
  let picked = 0;
  for (let i = 0; i < 2000; i++) if (half.root("r") !== undefined) picked++;
  assert.ok(picked > 800 && picked < 1200, `ratio 0.5 picked ${picked} of 2000`);
});

Deno.test("withSpan: no parent, no span; a throw marks the span failed", async () => {
  assert.equal(await withSpan(undefined, "x", (s) => s === undefined ? 1 : 2), 1);
  const sink = new MemorySink();
  const root = new Tracer({ service: "s", sinks: [sink] }).forced("root");
  await assert.rejects(withSpan(root, "step", () => Promise.reject(new Error("no"))), /no/);
  assert.equal(sink.spans[0].name, "step");
  assert.equal(sink.spans[0].statusCode, 2);
  assert.ok(sink.spans[0].end >= sink.spans[0].start);
});

function finished(): Span[] {
  const sink = new MemorySink();
  const t = new Tracer({ service: "svc", sinks: [sink] });
  const root = t.forced("root", "berth=1");
  const child = root.child("child", SpanKind.Client).set("n", 3).set("f", 1.5).set("b", true);
  child.set("s", "x").finish();
  root.finish();
  return sink.spans;
}

Deno.test("otlp: spans encode as OTLP/JSON (hex ids, nanos as strings, numeric enums)", () => {
  const spans = finished();
  const body = JSON.parse(encodeSpans("svc", spans, "1.2.3"));
  const rs = body.resourceSpans[0];
  assert.deepEqual(rs.resource.attributes, [{
    key: "service.name",
    value: { stringValue: "svc" },
  }]);
  assert.deepEqual(rs.scopeSpans[0].scope, { name: "berth", version: "1.2.3" });
  const [child, root] = rs.scopeSpans[0].spans;
  assert.match(child.traceId, /^[0-9a-f]{32}$/);
  assert.match(child.spanId, /^[0-9a-f]{16}$/);
  assert.equal(child.parentSpanId, root.spanId);
  assert.equal("parentSpanId" in root, false, "a root has no parentSpanId");
  assert.equal(child.kind, 3);
  assert.equal(root.kind, 1);
  assert.equal(typeof child.startTimeUnixNano, "string");
  assert.match(child.startTimeUnixNano, /^[0-9]{19}$/);
  assert.ok(BigInt(child.endTimeUnixNano) >= BigInt(child.startTimeUnixNano));
  assert.deepEqual(child.attributes, [
    { key: "n", value: { intValue: "3" } },
    { key: "f", value: { doubleValue: 1.5 } },
    { key: "b", value: { boolValue: true } },
    { key: "s", value: { stringValue: "x" } },
  ]);
  assert.deepEqual(child.status, { code: 0 });
  assert.equal(child.traceState, "berth=1");
  const back = decodeRequest(body);
  assert.equal(back.length, 2);
  assert.equal(back[0].service, "svc");
  assert.equal(back[0].attributes.n, 3);
  assert.throws(() => decodeRequest({}), /resourceSpans/);
});

Deno.test("tree: children under parents, offsets from the first span", () => {
  const spans = decodeRequest(JSON.parse(encodeSpans("svc", finished())));
  const roots = buildTree(spans);
  assert.equal(roots.length, 1);
  assert.equal(roots[0].span.name, "root");
  assert.equal(roots[0].children[0].span.name, "child");
  const text = formatTree(spans);
  assert.match(
    text,
    /\n\s+0\.00\s+[0-9.]+ {2}root \[svc\]\n\s+[0-9.]+\s+[0-9.]+ {4}child \[svc\]\n$/,
  );
});

Deno.test("batch sink: bounded queue drops and counts beyond its bound; flush exports in batches", async () => {
  const batches: number[] = [];
  const sink = new BatchSink((spans) => {
    batches.push(spans.length);
    return Promise.resolve();
  }, { maxQueue: 5, maxBatch: 100, delayMs: 60_000 });
  const spans = finished();
  for (let i = 0; i < 8; i++) sink.add(spans[0]);
  assert.equal(sink.queued, 5);
  assert.equal(sink.dropped, 3);
  await sink.flush();
  assert.deepEqual(batches, [5]);
  assert.equal(sink.queued, 0);
  // A failing exporter loses its batch but the sink keeps working.
  let calls = 0;
  const failing = new BatchSink(() => {
    calls++;
    return Promise.reject(new Error("down"));
  }, { delayMs: 60_000 });
  failing.add(spans[0]);
  await failing.flush();
  failing.add(spans[0]);
  await failing.flush();
  assert.equal(calls, 2);
});

Deno.test("settings: containerd's sections, protocol and ratio checks, the shim's environment", () => {
  assert.equal(tracesUrl("127.0.0.1:4318", true), "http://127.0.0.1:4318/v1/traces");
  assert.equal(tracesUrl("collector:4318", false), "https://collector:4318/v1/traces");
  assert.equal(tracesUrl("http://h:1/v1/traces", false), "http://h:1/v1/traces");
  assert.throws(() => tracesUrl("ftp://h/", true), /only http and https/);
  assert.doesNotThrow(() => checkProtocol("http/json"));
  assert.throws(() => checkProtocol("grpc"), /"grpc" is not supported by berth/);
  assert.throws(() => checkProtocol("http/protobuf"), /OTLP\/HTTP JSON/);
  const none = settingsFromConfig({}, "/s/traces.jsonl");
  assert.deepEqual(none, { url: "", ratio: 0, service: "berth", file: "/s/traces.jsonl" });
  const on = settingsFromConfig({
    otlp: { endpoint: "127.0.0.1:4318", insecure: true, protocol: "http/json" },
    tracing: { service_name: "b2" },
  }, "/s/t");
  assert.deepEqual(on, {
    url: "http://127.0.0.1:4318/v1/traces",
    ratio: 1,
    service: "b2",
    file: "",
  });
  assert.throws(
    () => settingsFromConfig({ tracing: { sampling_ratio: 2 } }, ""),
    /sampling_ratio must be between 0 and 1/,
  );
  const env = settingsEnv(on);
  const back = settingsFromEnv((k) => env[k], "shim")!;
  assert.deepEqual(back, { url: on.url, ratio: 1, service: "shim", file: "" });
  assert.equal(settingsFromEnv(() => undefined, "shim"), undefined, "nothing asked: no tracer");
  const fileOnly = settingsFromEnv((k) => settingsEnv(none)[k], "shim")!;
  assert.deepEqual(fileOnly, { url: "", ratio: 0, service: "shim", file: "/s/traces.jsonl" });
  assert.throws(
    () =>
      settingsFromEnv(
        (k) =>
          ({ OTEL_EXPORTER_OTLP_ENDPOINT: "http://h:1", OTEL_EXPORTER_OTLP_PROTOCOL: "grpc" })[k],
        "x",
      ),
    /not supported/,
  );
});

Deno.test("route: a tracestate names a loopback port; anything else is ignored", () => {
  assert.equal(routePort(routeState(4318)), 4318);
  assert.equal(routePort("x=1,berth=80"), 80);
  assert.equal(routePort("berth=0"), undefined);
  assert.equal(routePort("berth=99999"), undefined);
  assert.equal(routePort("berth=example.com:80"), undefined);
  assert.equal(routePort(undefined), undefined);
});

Deno.test("receiver and HTTP exporter: spans POSTed as OTLP/JSON arrive; other requests are refused", async () => {
  const r = await startReceiver();
  try {
    const sink = new MemorySink();
    const t = new Tracer({
      service: "svc",
      sinks: [sink],
      route: (await import("./route.ts")).routeSinks("svc"),
    });
    const root = t.forced("root", routeState(r.port));
    root.child("step").finish();
    root.finish();
    await r.settle(100, 5000, (s) => s.length === 2);
    assert.deepEqual(r.spans.map((s) => s.name).sort(), ["root", "step"]);
    const wrong = await fetch(r.url, {
      method: "POST",
      body: "x",
      headers: { "content-type": "text/plain" },
    });
    await wrong.body?.cancel();
    assert.equal(wrong.status, 415);
    const bad = await fetch(r.url, {
      method: "POST",
      body: "{}",
      headers: { "content-type": "application/json" },
    });
    await bad.body?.cancel();
    assert.equal(bad.status, 400);
  } finally {
    const { flushTracing } = await import("./span.ts");
    await flushTracing();
    await r.close();
  }
});
