import assert from "node:assert/strict";
import { Code } from "../../errdefs/mod.ts";
import { loadPlugins, Registry, SkipPlugin } from "../../plugin/mod.ts";
import { setLogSink } from "../../log/mod.ts";
import { callIn, handlersOf, unary } from "../testutil.ts";
import { versionService } from "../version/mod.ts";
import { introspectionPlugin } from "./mod.ts";

type PluginsRes = {
  plugins: {
    type: string;
    id: string;
    requires: string[];
    exports: Record<string, string>;
    initErr?: { code: number; message: string };
  }[];
};

Deno.test("introspection service: every plugin with its status; uuid kept across restarts; version", async () => {
  const root = await Deno.makeTempDir();
  setLogSink(() => {});
  try {
    const r = new Registry();
    r.register({
      type: "t.store.v1",
      id: "ok",
      init: (ctx) => (ctx.meta.exports.root = ctx.root, 1),
    });
    r.register({
      type: "t.store.v1",
      id: "skipped",
      init: () => {
        throw new SkipPlugin("not here");
      },
    });
    r.register({
      type: "t.svc.v1",
      id: "broken",
      requires: [{ type: "t.store.v1", id: "skipped" }],
      init: () => 1,
    });
    r.register(introspectionPlugin);
    const set = await loadPlugins(r, { root, state: root });
    const h = handlersOf(
      set.get("io.containerd.grpc.v1", "introspection"),
      "containerd.services.introspection.v1.Introspection",
    );
    const { plugins } = await unary<PluginsRes>(h, "plugins", { filters: [] }, callIn());
    assert.deepEqual(plugins.map((p) => p.id), ["ok", "skipped", "broken", "introspection"]);
    assert.equal(plugins[0].initErr, undefined);
    assert.deepEqual(plugins[0].exports, { root: `${root}/t.store.v1.ok` });
    assert.match(plugins[1].initErr!.message, /not here: skip plugin/); // how ctr tells "skip" from "error"
    assert.equal(plugins[2].initErr!.code, Code.FailedPrecondition);
    assert.deepEqual(plugins[2].requires, ["t.store.v1.skipped"]);
    const filtered = await unary<PluginsRes>(h, "plugins", {
      filters: ["type==t.store.v1,id==ok", "id==broken"],
    }, callIn());
    assert.deepEqual(filtered.plugins.map((p) => p.id), ["ok", "broken"]);
    const uuid = (await unary<{ uuid: string }>(h, "server", {}, callIn())).uuid;
    assert.match(uuid, /^[0-9a-f-]{36}$/);
    // A second daemon on the same root (a restart) reads the same uuid.
    const again = await loadPlugins(r, { root, state: root });
    const h2 = handlersOf(
      again.get("io.containerd.grpc.v1", "introspection"),
      "containerd.services.introspection.v1.Introspection",
    );
    assert.equal((await unary<{ uuid: string }>(h2, "server", {}, callIn())).uuid, uuid);
    assert.equal(
      (await Deno.stat(`${root}/io.containerd.grpc.v1.introspection/uuid`)).mode! & 0o777,
      0o600,
    );

    const v = handlersOf(versionService("1.2.3", "abc"), "containerd.services.version.v1.Version");
    assert.deepEqual(await unary(v, "version", {}, callIn()), {
      version: "1.2.3",
      revision: "abc",
    });
  } finally {
    setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l)));
    await Deno.remove(root, { recursive: true });
  }
});
