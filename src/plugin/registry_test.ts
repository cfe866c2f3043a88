import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { setLogSink } from "../log/mod.ts";
import {
  initOrder,
  loadPlugins,
  type Registration,
  Registry,
  RequiredPluginError,
  SkipPlugin,
} from "./mod.ts";

// Loading logs one line per plugin; keep test output readable.
function quietly<T>(fn: () => Promise<T>): Promise<T> {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  return fn().finally(() => setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l))));
}

const OPTS = { root: "/r", state: "/s" };

Deno.test("plugin: initialised in dependency order, instances reachable by type and id", async () => {
  const order: string[] = [];
  const r = new Registry();
  r.register({
    type: "t.service.v1",
    id: "svc",
    requires: ["t.store.v1", { type: "t.meta.v1", id: "db" }],
    init: (ctx) => {
      order.push("svc");
      return `svc(${ctx.first<string>("t.store.v1")},${ctx.get<string>("t.meta.v1", "db")})`;
    },
  });
  r.register({
    type: "t.store.v1",
    id: "a",
    requires: ["t.meta.v1"],
    init: () => (order.push("a"), "A"),
  });
  r.register({
    type: "t.meta.v1",
    id: "db",
    init: (ctx) => {
      order.push("db");
      ctx.meta.exports.root = ctx.root;
      assert.deepEqual(ctx.config, { x: 1 });
      return "DB";
    },
  });
  const set = await quietly(() =>
    loadPlugins(r, { ...OPTS, config: { "t.meta.v1.db": { x: 1 } } })
  );
  assert.deepEqual(order, ["db", "a", "svc"]);
  assert.equal(set.get("t.service.v1", "svc"), "svc(A,DB)");
  assert.deepEqual(set.find("t.meta.v1", "db")!.meta.exports, { root: "/r/t.meta.v1.db" });
  assert.deepEqual(set.list().map((p) => p.status), ["ok", "ok", "ok"]);
});

Deno.test("plugin: a failed or skipped plugin is recorded and its dependents fail, others load", async () => {
  const r = new Registry();
  r.register({
    type: "t.snap.v1",
    id: "broken",
    init: () => {
      throw new Error("no kernel support");
    },
  });
  r.register({
    type: "t.snap.v1",
    id: "fancy",
    init: () => {
      throw new SkipPlugin("no btrfs");
    },
  });
  r.register({
    type: "t.dep.v1",
    id: "needs-broken",
    requires: [{ type: "t.snap.v1", id: "broken" }],
    init: () => 1,
  });
  r.register({ type: "t.dep.v1", id: "needs-any", requires: ["t.snap.v1"], init: () => 2 });
  r.register({ type: "t.other.v1", id: "fine", init: () => 3 });
  const set = await quietly(() => loadPlugins(r, OPTS));
  const st = Object.fromEntries(set.list().map((p) => [p.uri, [p.status, p.error?.message]]));
  assert.deepEqual(st["t.snap.v1.broken"], ["error", "no kernel support"]);
  assert.deepEqual(st["t.snap.v1.fancy"], ["skip", "no btrfs: skip plugin"]);
  assert.equal(st["t.dep.v1.needs-broken"][0], "error");
  assert.match(
    st["t.dep.v1.needs-broken"][1]!,
    /requires plugin t\.snap\.v1\.broken, which did not load: no kernel support/,
  );
  assert.match(st["t.dep.v1.needs-any"][1]!, /none loaded/);
  assert.deepEqual(st["t.other.v1.fine"], ["ok", undefined]);
  assert.throws(() => set.get("t.snap.v1", "broken"), (e) => isCode(e, Code.FailedPrecondition));
  assert.throws(() => set.get("t.snap.v1", "nope"), (e) => isCode(e, Code.NotFound));
  assert.throws(() => set.first("t.snap.v1"), /no plugin of type t\.snap\.v1 loaded/);
});

Deno.test("plugin: a required plugin that fails (directly or through a requirement) stops loading", async () => {
  const r = new Registry();
  r.register({
    type: "t.a.v1",
    id: "a",
    init: () => {
      throw new Error("boom");
    },
  });
  r.register({ type: "t.b.v1", id: "b", requires: ["t.a.v1"], required: true, init: () => 1 });
  r.register({ type: "t.c.v1", id: "c", init: () => 1 });
  await assert.rejects(quietly(() => loadPlugins(r, OPTS)), (e) => {
    assert.ok(e instanceof RequiredPluginError);
    assert.match(
      e.message,
      /load required plugin t\.b\.v1\.b: requires a plugin of type t\.a\.v1.*boom/,
    );
    assert.equal(e.plugins.list().length, 2, "what loaded before is handed back to be closed");
    return true;
  });
  // Required by configuration rather than registration.
  const r2 = new Registry();
  r2.register({
    type: "t.a.v1",
    id: "a",
    init: () => {
      throw new Error("boom");
    },
  });
  await assert.rejects(
    quietly(() => loadPlugins(r2, { ...OPTS, required: ["t.a.v1.a"] })),
    /load required plugin t\.a\.v1\.a: boom/,
  );
  await assert.rejects(
    quietly(() => loadPlugins(r2, { ...OPTS, required: ["t.x.v1.x"] })),
    /t\.x\.v1\.x is not registered/,
  );
  // Not required: the same failure is only recorded.
  assert.equal((await quietly(() => loadPlugins(r2, OPTS))).list()[0].status, "error");
});

Deno.test('plugin: disabled plugins are not loaded; "*" comes after everything', async () => {
  const order: string[] = [];
  const r = new Registry();
  r.register({
    type: "t.intro.v1",
    id: "all",
    requires: ["*"],
    init: (ctx) => (order.push("all"), ctx.plugins().length),
  });
  r.register({ type: "t.a.v1", id: "a", init: () => order.push("a") });
  r.register({ type: "t.b.v1", id: "b", init: () => order.push("b") });
  const set = await quietly(() => loadPlugins(r, { ...OPTS, disabled: ["b"] }));
  assert.deepEqual(order, ["a", "all"]);
  assert.equal(set.get("t.intro.v1", "all"), 1);
  assert.equal(set.find("t.b.v1", "b"), undefined);
});

Deno.test("plugin: registration errors and cycles", () => {
  const r = new Registry();
  const reg: Registration = { type: "t.a.v1", id: "a", init: () => 1 };
  r.register(reg);
  assert.throws(() => r.register(reg), (e) => isCode(e, Code.AlreadyExists));
  assert.throws(() => r.register({ ...reg, id: "" }), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(
    () => r.register({ ...reg, id: "z", requires: ["*", "t.b.v1"] }),
    /"\*" must be its only/,
  );
  const x: Registration = { type: "t.x.v1", id: "x", requires: ["t.y.v1"], init: () => 1 };
  const y: Registration = { type: "t.y.v1", id: "y", requires: ["t.x.v1"], init: () => 1 };
  assert.throws(() => initOrder([x, y]), /cycle: t\.x\.v1\.x -> t\.y\.v1\.y -> t\.x\.v1\.x/);
});

Deno.test("plugin: close runs in reverse order and survives a failing close", async () => {
  const closed: string[] = [];
  const r = new Registry();
  r.register({
    type: "t.a.v1",
    id: "a",
    init: () => "a",
    close: (i) => {
      closed.push(i);
    },
  });
  r.register({
    type: "t.b.v1",
    id: "b",
    requires: ["t.a.v1"],
    init: () => "b",
    close: () => {
      throw new Error("x");
    },
  });
  r.register({
    type: "t.c.v1",
    id: "c",
    requires: ["t.b.v1"],
    init: () => "c",
    close: (i) => {
      closed.push(i);
    },
  });
  const set = await quietly(() => loadPlugins(r, OPTS));
  await quietly(() => set.close());
  assert.deepEqual(closed, ["c", "a"]);
});
