import assert from "node:assert/strict";
import { ContentStore, digestOf } from "../content/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { type Metadata, NamespacedContent, openMetadata } from "../metadata/mod.ts";
import { openSnapshotter, type Snapshotter } from "../snapshots/mod.ts";
import { GarbageCollector, labelRefs, mark, type Node, nodeId } from "./mod.ts";

Deno.test("gc: tricolor marking follows references, survives cycles, ignores the unreachable", () => {
  const n = (key: string): Node => ({ type: "content", namespace: "ns", key });
  const edges: Record<string, string[]> = { a: ["b"], b: ["c", "a"], c: [], d: ["a"] };
  const live = mark([n("a")], (x) => (edges[x.key] ?? []).map(n));
  assert.deepEqual([...live].sort(), ["a", "b", "c"].map((k) => nodeId(n(k))));
  // Flat roots mark themselves as plain nodes but follow nothing beyond what refs gives.
  const flat = mark([{ type: "content-flat", namespace: "ns", key: "a" }], () => []);
  assert.deepEqual([...flat], [nodeId(n("a"))]);
  // Deep chains do not overflow the stack.
  const deep = mark(
    [n("0")],
    (x) => (Number(x.key) < 100000 ? [n(String(Number(x.key) + 1))] : []),
  );
  assert.equal(deep.size, 100001);
});

Deno.test("gc: gc.ref labels are read as containerd reads them", () => {
  const refs = labelRefs("ns", {
    "containerd.io/gc.ref.content": "sha256:a",
    "containerd.io/gc.ref.content.config": "sha256:b",
    "containerd.io/gc.ref.content/m.0": "sha256:c",
    "containerd.io/gc.ref.contentious": "sha256:no",
    "containerd.io/gc.ref.snapshot.overlayfs": "layer",
    "containerd.io/gc.ref.snapshot.native/1": "other",
    "containerd.io/gc.root": "x",
    unrelated: "sha256:no",
  });
  assert.deepEqual(refs.map((r) => `${r.type}:${r.key}`).sort(), [
    "content:sha256:a",
    "content:sha256:b",
    "content:sha256:c",
    "snapshot:native/other",
    "snapshot:overlayfs/layer",
  ]);
});

interface World {
  md: Metadata;
  content: ContentStore;
  native: Snapshotter;
  gc: GarbageCollector;
  blob(ns: string, text: string, labels?: Record<string, string>): Promise<string>;
  blobExists(d: string): Promise<boolean>;
}

async function withWorld(fn: (w: World) => Promise<void>, delayMs?: number): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "berth-gc-" });
  const md = await openMetadata(state);
  const content = await ContentStore.open(`${state}/io.containerd.content.v1.content`);
  const native = await openSnapshotter("native", state);
  const gc = new GarbageCollector({ metadata: md, content, snapshotters: { native }, delayMs });
  const w: World = {
    md,
    content,
    native,
    gc,
    async blob(ns, text, labels) {
      const d = digestOf(text);
      await content.info(d).catch(async () => {
        const wr = await content.writer(`ref-${d}`);
        await wr.write(new TextEncoder().encode(text));
        await wr.commit(text.length, d);
      });
      md.content.add(ns, { digest: d, size: text.length, labels });
      return d;
    },
    async blobExists(d) {
      return await content.info(d).then(() => true, () => false);
    },
  };
  try {
    await fn(w);
  } finally {
    await gc.close();
    native.close();
    md.close();
    await Deno.remove(state, { recursive: true });
  }
}

const target = (digest: string) => ({
  mediaType: "application/vnd.oci.image.manifest.v1+json",
  digest,
  size: 1,
});

Deno.test("gc: deleting an image frees its blobs unless a lease or label keeps them", () =>
  withWorld(async (w) => {
    const layer = await w.blob("default", "layer");
    const config = await w.blob("default", "config");
    const manifest = await w.blob("default", "manifest", {
      "containerd.io/gc.ref.content.config": config,
      "containerd.io/gc.ref.content.l.0": layer,
    });
    const orphan = await w.blob("default", "orphan");
    const rooted = await w.blob("default", "rooted", { "containerd.io/gc.root": "2024-01-01" });
    const leased = await w.blob("default", "leased");
    w.md.leases.create("default", "pull");
    w.md.leases.addResource("default", "pull", { type: "content", id: leased });
    w.md.images.create("default", { name: "img", target: target(manifest) });

    let stats = await w.gc.collect();
    assert.equal(stats.removed.content, 1);
    assert.equal(stats.blobsDeleted, 1);
    assert.equal(await w.blobExists(orphan), false);
    for (const d of [layer, config, manifest, rooted, leased]) assert.ok(await w.blobExists(d), d);

    w.md.images.delete("default", "img");
    stats = await w.gc.collect();
    assert.equal(stats.removed.content, 3);
    for (const d of [layer, config, manifest]) {
      assert.equal(await w.blobExists(d), false, d);
      assert.throws(() => w.md.content.info("default", d));
    }
    assert.ok(await w.blobExists(rooted));
    assert.ok(await w.blobExists(leased));

    w.md.leases.delete("default", "pull");
    await w.gc.collect();
    assert.equal(await w.blobExists(leased), false);
    assert.ok(await w.blobExists(rooted));
  }));

Deno.test("gc: a writer or a commit that finds its blob there already keeps it for its own lease", () =>
  withWorld(async (w) => {
    const nc = new NamespacedContent(w.content, w.md);
    const exists = (e: unknown) => isCode(e, Code.AlreadyExists);
    // What a failed import leaves: a blob nothing references once its lease went.
    const found = await w.blob("default", "found");
    w.md.leases.create("default", "again");
    await assert.rejects(nc.writer("default", "r0", { expected: found, lease: "again" }), exists);

    // Two writers of the same bytes: the second commit finds the first's blob.
    const text = "raced";
    const raced = digestOf(text);
    w.md.leases.create("default", "first");
    w.md.leases.create("default", "second");
    const a = await nc.writer("default", "ra", { lease: "first" });
    const b = await nc.writer("default", "rb", { lease: "second" });
    for (const x of [a, b]) await x.write(new TextEncoder().encode(text));
    assert.equal(await a.commit(text.length, raced), raced);
    await assert.rejects(b.commit(text.length, raced), exists);
    assert.deepEqual(await nc.listStatuses("default"), [], "no ingest left behind");

    w.md.leases.delete("default", "first");
    await w.gc.collect();
    assert.ok(await w.blobExists(found), "the writer's lease holds the blob it found");
    assert.ok(await w.blobExists(raced), "the losing commit's lease holds the winner's blob");
    w.md.leases.delete("default", "again");
    w.md.leases.delete("default", "second");
    await w.gc.collect();
    assert.equal(await w.blobExists(found), false);
    assert.equal(await w.blobExists(raced), false);
  }));

Deno.test("gc: shared blobs stay while any namespace holds them; leases expire; flat leases hold only themselves", () =>
  withWorld(async (w) => {
    const shared = await w.blob("a", "shared");
    await w.blob("b", "shared");
    w.md.images.create("b", { name: "img", target: target(shared) });
    await w.gc.collect();
    assert.throws(() => w.md.content.info("a", shared)); // a's unreferenced record went
    assert.ok(await w.blobExists(shared)); // b still holds the bytes

    const child = await w.blob("a", "child");
    const parent = await w.blob("a", "parent", { "containerd.io/gc.ref.content.c": child });
    w.md.leases.create("a", "flat", { "containerd.io/gc.flat": "1" });
    w.md.leases.addResource("a", "flat", { type: "content", id: parent });
    const old = await w.blob("a", "old");
    w.md.leases.create("a", "expired", {
      "containerd.io/gc.expire": new Date(Date.now() - 1000).toISOString(),
    });
    w.md.leases.addResource("a", "expired", { type: "content", id: old });
    const stats = await w.gc.collect();
    assert.ok(await w.blobExists(parent));
    assert.equal(await w.blobExists(child), false);
    assert.equal(await w.blobExists(old), false);
    assert.equal(stats.removed.leases, 1);
    assert.deepEqual(w.md.leases.list("a").map((l) => l.id), ["flat"]);
  }));

Deno.test("gc: snapshots live through containers, parents and labels; the rest is removed from the backend", () =>
  withWorld(async (w) => {
    const sn = w.md.snapshotter(w.native);
    await sn.prepare("default", "l1-extract", "");
    await sn.commit("default", "l1", "l1-extract");
    await sn.prepare("default", "l2-extract", "l1");
    await sn.commit("default", "l2", "l2-extract");
    await sn.prepare("default", "c1", "l2");
    await sn.prepare("default", "stray", "");
    w.md.containers.create("default", {
      id: "c1",
      runtime: { name: "io.containerd.runc.v2" },
      spec: { typeUrl: "spec", value: new Uint8Array() },
      snapshotter: "native",
      snapshotKey: "c1",
    });
    let stats = await w.gc.collect();
    assert.equal(stats.removed.snapshots, 1);
    assert.equal(stats.snapshotsRemoved, 1);
    assert.deepEqual((await sn.list("default")).map((i) => i.name).sort(), ["c1", "l1", "l2"]);
    assert.equal((await w.native.list()).length, 3);

    // A config blob referencing the top layer keeps the chain once the container goes.
    const config = await w.blob("default", "cfg", { "containerd.io/gc.ref.snapshot.native": "l2" });
    w.md.images.create("default", { name: "img", target: target(config) });
    w.md.containers.delete("default", "c1");
    stats = await w.gc.collect();
    assert.deepEqual((await sn.list("default")).map((i) => i.name).sort(), ["l1", "l2"]);

    w.md.images.delete("default", "img");
    stats = await w.gc.collect();
    assert.equal(stats.removed.snapshots, 2);
    assert.equal(stats.snapshotsRemoved, 2);
    assert.deepEqual(await w.native.list(), []);
    assert.deepEqual([...Deno.readDirSync(`${w.native.root}/snapshots`)], []);
    // An empty namespace can go now.
    w.md.namespaces.delete("default");
  }));

Deno.test("gc: deletions schedule a collection", () =>
  withWorld(async (w) => {
    w.gc.watch();
    const d = await w.blob("default", "scheduled");
    w.md.images.create("default", { name: "img", target: target(d) });
    w.md.images.delete("default", "img");
    const deadline = Date.now() + 5000;
    while (await w.blobExists(d)) {
      if (Date.now() > deadline) throw new Error("scheduled collection did not run");
      await new Promise((r) => setTimeout(r, 20));
    }
  }, 30));

Deno.test("gc: pause_threshold spaces collections by their average time", () =>
  withWorld(async (w) => {
    const paced = () =>
      new GarbageCollector({
        metadata: w.md,
        content: w.content,
        snapshotters: { native: w.native },
        delayMs: 0,
        pauseThreshold: 0.01,
      });
    const fresh = paced();
    try {
      // Before any collection there is nothing to pace by.
      const now = Date.now();
      fresh.scheduleCollect();
      assert.ok(fresh.scheduledAt! <= now + 1);
    } finally {
      await fresh.close();
    }
    const gc = paced();
    try {
      const before = Date.now();
      const stats = await gc.collect();
      const after = Date.now();
      gc.scheduleCollect();
      // The next one waits 99 times the collection's own time after it ended.
      const pause = stats.elapsedMs * 99;
      assert.ok(gc.scheduledAt! >= before + pause - 1, `${gc.scheduledAt} < ${before} + ${pause}`);
      assert.ok(gc.scheduledAt! <= after + pause + 1, `${gc.scheduledAt} > ${after} + ${pause}`);
      // A request for later keeps the earlier time.
      const at = gc.scheduledAt;
      gc.scheduleCollect(60_000);
      assert.equal(gc.scheduledAt, at);
    } finally {
      await gc.close();
    }
  }));

Deno.test("gc: a snapshot prepared under a lease lives until a container holds it and the lease goes", () =>
  withWorld(async (w) => {
    const sn = w.md.snapshotter(w.native);
    w.md.leases.create("default", "run");
    await sn.prepare("default", "c1", "", { lease: "run" });
    assert.deepEqual(w.md.leases.listResources("default", "run"), [
      { type: "snapshots/native", id: "c1" },
    ]);
    let stats = await w.gc.collect();
    assert.equal(stats.removed.snapshots, 0);
    w.md.containers.create("default", {
      id: "c1",
      runtime: { name: "io.containerd.runc.v2" },
      spec: { typeUrl: "spec", value: new Uint8Array() },
      snapshotter: "native",
      snapshotKey: "c1",
    });
    w.md.leases.delete("default", "run");
    stats = await w.gc.collect();
    assert.equal(stats.removed.snapshots, 0);
    assert.equal((await w.native.list()).length, 1);

    // A lease that ends before a container refers to its snapshot leaves it to the collector.
    w.md.leases.create("default", "abandoned");
    await sn.prepare("default", "c2", "", { lease: "abandoned" });
    w.md.leases.delete("default", "abandoned");
    stats = await w.gc.collect();
    assert.equal(stats.removed.snapshots, 1);
    assert.deepEqual((await sn.list("default")).map((i) => i.name), ["c1"]);
    assert.equal((await w.native.list()).length, 1);
  }));
