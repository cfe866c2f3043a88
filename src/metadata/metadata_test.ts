import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Code, isCode } from "../errdefs/mod.ts";
import { openSnapshotter } from "../snapshots/mod.ts";
import { type Metadata, METADATA_PLUGIN_DIR, MIGRATIONS, openMetadata } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);
const D1 = "sha256:" + "1".repeat(64);
const D2 = "sha256:" + "2".repeat(64);
const spec = {
  typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec",
  value: new Uint8Array([1, 2, 3]),
};

async function withMetadata(
  fn: (md: Metadata, state: string) => Promise<void> | void,
): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "berth-md-" });
  const md = await openMetadata(state);
  try {
    await fn(md, state);
  } finally {
    md.close();
    await Deno.remove(state, { recursive: true });
  }
}

Deno.test("metadata: schema is versioned, WAL, and refuses newer versions", () =>
  withMetadata(async (md, state) => {
    assert.equal(md.db.version(), MIGRATIONS.length);
    const mode = md.db.get<{ journal_mode: string }>("PRAGMA journal_mode");
    assert.equal(mode?.journal_mode, "wal");
    assert.equal(md.db.get<{ foreign_keys: number }>("PRAGMA foreign_keys")?.foreign_keys, 1);
    md.close();
    // Reopening runs no migration twice.
    const again = await openMetadata(state);
    assert.equal(again.db.version(), MIGRATIONS.length);
    again.close();
    const raw = new DatabaseSync(`${state}/${METADATA_PLUGIN_DIR}/meta.db`);
    raw.exec(`UPDATE schema_version SET version = ${MIGRATIONS.length + 1}`);
    raw.close();
    await assert.rejects(openMetadata(state), code(Code.FailedPrecondition));
  }));

Deno.test("metadata: namespaces", () =>
  withMetadata((md) => {
    md.namespaces.create("default", { a: "1" });
    assert.throws(() => md.namespaces.create("default"), code(Code.AlreadyExists));
    assert.throws(() => md.namespaces.create("bad/ns"), code(Code.InvalidArgument));
    assert.throws(() => md.namespaces.create(".."), code(Code.InvalidArgument));
    assert.deepEqual(md.namespaces.setLabel("default", "b", "2").labels, { a: "1", b: "2" });
    assert.deepEqual(md.namespaces.setLabel("default", "a", "").labels, { b: "2" });
    assert.throws(() => md.namespaces.update("default", {}, ["name"]), code(Code.InvalidArgument));
    assert.throws(() => md.namespaces.get("nope"), code(Code.NotFound));

    // Creating an object creates its namespace.
    md.images.create("k8s.io", { name: "img", target: { mediaType: "m", digest: D1, size: 1 } });
    md.content.add("k8s.io", { digest: D1, size: 1 });
    md.leases.create("k8s.io", "l1");
    assert.deepEqual(md.namespaces.list().map((n) => n.name), ["default", "k8s.io"]);
    assert.throws(() => md.namespaces.delete("k8s.io"), (e) => {
      assert.ok(isCode(e, Code.FailedPrecondition));
      assert.match((e as Error).message, /images, blobs/);
      return true;
    });
    md.images.delete("k8s.io", "img");
    md.content.delete("k8s.io", D1);
    md.namespaces.delete("k8s.io"); // its lease goes with it
    assert.throws(() => md.leases.get("k8s.io", "l1"), code(Code.NotFound));
    assert.throws(() => md.namespaces.delete("k8s.io"), code(Code.NotFound));
  }));

Deno.test("metadata: containers with field-path updates", () =>
  withMetadata((md) => {
    const c = md.containers.create("default", {
      id: "c1",
      runtime: {
        name: "io.containerd.runc.v2",
        options: { typeUrl: "runc.v1.Options", value: new Uint8Array([9]) },
      },
      spec,
      image: "busybox",
      labels: { app: "web", tier: "front" },
      snapshotter: "overlayfs",
      snapshotKey: "c1",
      extensions: { ext1: { typeUrl: "x", value: new Uint8Array([7]) } },
    });
    assert.deepEqual(c.runtime.options?.value, new Uint8Array([9]));
    assert.deepEqual(c.spec.value, spec.value);
    assert.deepEqual(c.extensions.ext1.value, new Uint8Array([7]));
    assert.equal(c.sandbox, "");
    assert.throws(
      () => md.containers.create("default", { id: "c1", runtime: c.runtime, spec }),
      code(Code.AlreadyExists),
    );
    const bad = [
      { id: "bad id", runtime: c.runtime, spec },
      { id: "c2", runtime: { name: "" }, spec },
      { id: "c2", runtime: c.runtime, spec: undefined as never },
      { id: "c2", runtime: c.runtime, spec, snapshotKey: "k" },
      { id: "c2", runtime: c.runtime, spec, extensions: { "": spec } },
    ];
    for (const b of bad) {
      assert.throws(() => md.containers.create("default", b), code(Code.InvalidArgument));
    }
    md.containers.create("default", {
      id: "c2",
      runtime: { name: "io.containerd.runsc.v1" },
      spec,
      image: "alpine",
    });

    const up = md.containers.update("default", {
      id: "c1",
      labels: { tier: "back", app: "x" },
      image: "new",
    }, [
      "labels.tier",
      "image",
    ]);
    assert.deepEqual(up.labels, { app: "web", tier: "back" });
    assert.equal(up.image, "new");
    assert.ok(up.updatedAt >= up.createdAt);
    assert.equal(up.createdAt.getTime(), c.createdAt.getTime());
    const up2 = md.containers.update("default", { id: "c1", extensions: {} }, [
      "extensions.ext1",
      "labels.app",
    ]);
    assert.deepEqual(up2.extensions, {});
    assert.deepEqual(up2.labels, { tier: "back" });
    assert.throws(
      () => md.containers.update("default", { id: "c1" }, ["runtime"]),
      code(Code.InvalidArgument),
    );
    // Full replace: immutable fields must not change.
    assert.throws(
      () => md.containers.update("default", { ...up2, snapshotter: "native" }),
      code(Code.InvalidArgument),
    );
    const full = md.containers.update("default", { ...up2, labels: { only: "this" } });
    assert.deepEqual(full.labels, { only: "this" });
    assert.throws(
      () => md.containers.update("default", { id: "nope" }, ["image"]),
      code(Code.NotFound),
    );

    const ids = (f: string[]) => md.containers.list("default", f).map((x) => x.id);
    assert.deepEqual(ids([]), ["c1", "c2"]);
    assert.deepEqual(ids(["runtime.name==io.containerd.runc.v2"]), ["c1"]);
    assert.deepEqual(ids(["image~=^alp", "labels.only==this"]), ["c1", "c2"]);
    assert.deepEqual(md.containers.list("other"), []);
    md.containers.delete("default", "c1");
    assert.throws(() => md.containers.delete("default", "c1"), code(Code.NotFound));
  }));

Deno.test("metadata: images", () =>
  withMetadata((md) => {
    const target = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest: D1,
      size: 10,
      annotations: { a: "1" },
    };
    md.images.create("default", { name: "docker.io/library/redis:7", target, labels: { k: "v" } });
    assert.throws(
      () => md.images.create("default", { name: "docker.io/library/redis:7", target }),
      code(Code.AlreadyExists),
    );
    for (
      const t of [{ ...target, digest: "sha256:bad" }, { ...target, size: 0 }, {
        ...target,
        mediaType: "",
      }]
    ) {
      assert.throws(
        () => md.images.create("default", { name: "x", target: t }),
        code(Code.InvalidArgument),
      );
    }
    assert.throws(
      () => md.images.create("default", { name: "", target }),
      code(Code.InvalidArgument),
    );
    const up = md.images.update(
      "default",
      {
        name: "docker.io/library/redis:7",
        target: { ...target, annotations: { b: "2" } },
        labels: {},
      },
      ["annotations.b", "labels.k"],
    );
    assert.deepEqual(up.target.annotations, { a: "1", b: "2" });
    assert.deepEqual(up.labels, {});
    const up2 = md.images.update("default", {
      name: "docker.io/library/redis:7",
      target: { ...target, digest: D2 },
    }, [
      "target",
    ]);
    assert.equal(up2.target.digest, D2);
    assert.throws(
      () => md.images.update("default", { name: "docker.io/library/redis:7" }, ["name"]),
      code(Code.InvalidArgument),
    );
    md.images.create("default", { name: "alpine", target: { ...target, mediaType: "index" } });
    const names = (f: string[]) => md.images.list("default", f).map((i) => i.name);
    assert.deepEqual(names([`target.digest==${D2}`]), ["docker.io/library/redis:7"]);
    assert.deepEqual(names(["target.mediatype==index"]), ["alpine"]);
    assert.deepEqual(names(["annotations.a==1"]), ["alpine", "docker.io/library/redis:7"]);
    assert.deepEqual(names(["name~=redis"]), ["docker.io/library/redis:7"]);
    assert.throws(() => md.images.list("default", ["name~=("]), code(Code.InvalidArgument));
    md.images.delete("default", "alpine");
    assert.throws(() => md.images.get("default", "alpine"), code(Code.NotFound));
  }));

Deno.test("metadata: leases, resources and content records", () =>
  withMetadata((md) => {
    md.leases.create("default", "1700000000-abc_d=", {
      "containerd.io/gc.expire": "2100-01-01T00:00:00Z",
    });
    assert.throws(() => md.leases.create("default", "1700000000-abc_d="), code(Code.AlreadyExists));
    assert.throws(() => md.leases.create("default", ""), code(Code.InvalidArgument));
    const lid = "1700000000-abc_d=";
    md.content.add("default", {
      digest: D1,
      size: 5,
      labels: { "containerd.io/gc.ref.content.l0": D2 },
    }, { lease: lid });
    assert.throws(
      () => md.content.add("default", { digest: D1, size: 5 }),
      code(Code.AlreadyExists),
    );
    assert.throws(
      () => md.content.add("default", { digest: D2, size: 5 }, { lease: "none" }),
      code(Code.NotFound),
    );
    assert.throws(() => md.content.info("default", D2), code(Code.NotFound)); // rolled back with the failed lease
    md.content.addIngest("default", { ref: "pull-1", expected: D2 }, { lease: lid });
    md.leases.addResource("default", lid, { type: "snapshots/overlayfs", id: "snap-1" });
    md.leases.addResource("default", lid, { type: "snapshots/overlayfs", id: "snap-1" }); // idempotent
    assert.throws(
      () => md.leases.addResource("default", lid, { type: "bogus", id: "x" }),
      code(Code.InvalidArgument),
    );
    assert.throws(
      () => md.leases.addResource("default", "nope", { type: "content", id: D1 }),
      code(Code.NotFound),
    );
    assert.deepEqual(md.leases.listResources("default", lid), [
      { id: D1, type: "content" },
      { id: "pull-1", type: "ingests" },
      { id: "snap-1", type: "snapshots/overlayfs" },
    ]);
    md.leases.deleteResource("default", lid, { type: "ingests", id: "pull-1" });
    assert.equal(md.leases.listResources("default", lid).length, 2);
    assert.deepEqual(
      md.leases.list("default", ['labels."containerd.io/gc.expire"']).map((l) => l.id),
      [lid],
    );

    assert.equal(md.content.getIngest("default", "pull-1").expected, D2);
    md.content.removeIngest("default", "pull-1");
    assert.deepEqual(md.content.listIngests("default"), []);

    const rec = md.content.update("default", { digest: D1, labels: { x: "1" } }, ["labels.x"]);
    assert.deepEqual(rec.labels, { "containerd.io/gc.ref.content.l0": D2, x: "1" });
    assert.throws(
      () => md.content.update("default", { digest: D1 }, ["size"]),
      code(Code.InvalidArgument),
    );
    assert.deepEqual(md.content.list("default", ["labels.x==1"]).map((c) => c.digest), [D1]);
    assert.deepEqual(md.content.list("other"), []);
    assert.deepEqual([...md.content.allDigests()], [D1]);
    md.leases.delete("default", lid);
    assert.throws(() => md.leases.listResources("default", lid), code(Code.NotFound));
  }));

Deno.test("metadata: mutations notify, rollbacks leave nothing, transactions are synchronous", () =>
  withMetadata((md) => {
    const seen: boolean[] = [];
    md.db.onMutation((dirty) => seen.push(dirty));
    md.images.create("default", { name: "a", target: { mediaType: "m", digest: D1, size: 1 } });
    md.images.delete("default", "a");
    assert.deepEqual(seen, [false, true]);
    assert.throws(() =>
      md.db.tx(() => {
        md.images.create("default", { name: "b", target: { mediaType: "m", digest: D1, size: 1 } });
        throw new Error("boom");
      })
    );
    assert.throws(() => md.images.get("default", "b"), code(Code.NotFound));
    assert.throws(() => md.db.tx(() => Promise.resolve(1)));
  }));

Deno.test("metadata: reused statements answer each call's own parameters, past the cache bound", () =>
  withMetadata((md) => {
    for (const id of ["a", "b"]) {
      md.containers.create("default", {
        id,
        labels: { id },
        image: "",
        runtime: { name: "r" },
        spec,
        snapshotter: "",
        snapshotKey: "",
        extensions: {},
      });
    }
    assert.equal(md.containers.get("default", "a").labels.id, "a");
    assert.equal(md.containers.get("default", "b").labels.id, "b");
    // More distinct statements than the cache keeps: each still runs its own text.
    for (let i = 0; i < 600; i++) {
      assert.deepEqual({ ...md.db.get<{ v: number }>(`SELECT ${i} + ? AS v`, 1) }, { v: i + 1 });
    }
    md.containers.delete("default", "a");
    assert.throws(() => md.containers.get("default", "a"), code(Code.NotFound));
    assert.equal(md.containers.get("default", "b").labels.id, "b");
  }));

Deno.test("metadata: namespaced snapshotter maps names per namespace", async () => {
  const state = await Deno.makeTempDir({ prefix: "berth-md-sn-" });
  const md = await openMetadata(state);
  const backend = await openSnapshotter("native", state);
  try {
    const sn = md.snapshotter(backend);
    await sn.prepare("ns1", "rootfs", "", { labels: { a: "1", "containerd.io/snapshot/x": "y" } });
    await sn.prepare("ns2", "rootfs", ""); // same name, other namespace
    await assert.rejects(sn.prepare("ns1", "rootfs", ""), code(Code.AlreadyExists));
    await assert.rejects(sn.prepare("ns1", "child", "missing"), code(Code.NotFound));
    const rec = md.snapshots.get("ns1", "native", "rootfs");
    assert.match(rec.backendKey, /^ns1\/\d+\/rootfs$/);
    // Only snapshotter-directed labels reach the backend.
    assert.deepEqual((await backend.stat(rec.backendKey)).labels, {
      "containerd.io/snapshot/x": "y",
    });
    assert.equal((await sn.stat("ns1", "rootfs")).kind, "active");

    await sn.commit("ns1", "layer", "rootfs", { labels: { "containerd.io/gc.root": "1" } });
    await assert.rejects(sn.stat("ns1", "rootfs"), code(Code.NotFound));
    const layer = await sn.stat("ns1", "layer");
    assert.equal(layer.kind, "committed");
    assert.deepEqual(layer.labels, { "containerd.io/gc.root": "1" });
    await sn.view("ns1", "v", "layer");
    assert.equal((await sn.stat("ns1", "v")).parent, "layer");
    assert.equal((await sn.mounts("ns1", "v"))[0].options.includes("ro"), true);
    assert.deepEqual((await sn.list("ns1", ["kind==view"])).map((i) => i.name), ["v"]);
    assert.deepEqual((await sn.list("ns2")).map((i) => i.name), ["rootfs"]);
    assert.deepEqual(
      (await sn.update("ns1", { name: "v", labels: { z: "1" } }, ["labels.z"])).labels,
      { z: "1" },
    );
    assert.ok((await sn.usage("ns1", "rootfs").catch((e) => e)) instanceof Error);

    await assert.rejects(sn.remove("ns1", "layer"), code(Code.FailedPrecondition));
    assert.throws(() => md.namespaces.delete("ns1"), code(Code.FailedPrecondition));
    await sn.remove("ns1", "v");
    await sn.remove("ns1", "layer");
    assert.deepEqual(await sn.list("ns1"), []);
    // The backend keeps its snapshots until garbage collection.
    assert.equal((await backend.list()).length, 3);
  } finally {
    backend.close();
    md.close();
    await Deno.remove(state, { recursive: true });
  }
});
