import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { Mount as MS, mount, umount2, Unmount } from "../../ffi/mod.ts";
import {
  type Mount,
  NativeSnapshotter,
  openSnapshotter,
  OverlaySnapshotter,
  type Snapshotter,
} from "./mod.ts";
import { exists } from "../fsutil/mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);

// Performs the returned mounts the way a shim would, with mount(2): the
// options mount(8) would turn into flags become flags, the rest is data.
function mountAll(mounts: Mount[], target: string): void {
  assert.equal(mounts.length, 1);
  const m = mounts[0];
  const ro = m.options.includes("ro");
  if (m.type === "bind") {
    const unknown = m.options.filter((o) => !["ro", "rw", "bind", "rbind"].includes(o));
    assert.deepEqual(unknown, [], "bind options this helper knows");
    mount(m.source, target, "", MS.BIND | (m.options.includes("rbind") ? MS.REC : 0));
    // A bind mount becomes read-only only by a remount.
    if (ro) mount("", target, "", MS.BIND | MS.REMOUNT | MS.RDONLY);
    return;
  }
  const data = m.options.filter((o) => o !== "ro" && o !== "rw").join(",");
  mount(m.source, target, m.type, ro ? MS.RDONLY : 0, data);
}

async function withMounted<T>(mounts: Mount[], fn: (dir: string) => Promise<T>): Promise<T> {
  const target = await Deno.makeTempDir({ prefix: "berth-snap-mnt-" });
  try {
    mountAll(mounts, target);
    try {
      return await fn(target);
    } finally {
      umount2(target);
    }
  } finally {
    await Deno.remove(target, { recursive: true });
  }
}

async function withRoot(fn: (state: string) => Promise<void>): Promise<void> {
  const state = await Deno.makeTempDir({ prefix: "berth-snap-" });
  try {
    await fn(state);
  } finally {
    // Nothing may stay mounted below the temp dir, whatever failed.
    const mounts = await Deno.readTextFile("/proc/self/mounts");
    for (const line of mounts.split("\n").reverse()) {
      const target = line.split(" ")[1];
      if (target?.startsWith(state)) umount2(target, Unmount.DETACH);
    }
    await Deno.remove(state, { recursive: true });
  }
}

Deno.test("snapshots/overlayfs: mounts of a chain show files, deletions and opaque dirs", () =>
  withRoot(async (state) => {
    const sn = await openSnapshotter("overlayfs", state) as OverlaySnapshotter;
    try {
      const root = `${state}/io.containerd.snapshotter.v1.overlayfs`;
      const m0 = await sn.prepare("base-active", "", { labels: { a: "1" } });
      assert.deepEqual(m0, [{
        type: "bind",
        source: `${root}/snapshots/1/fs`,
        options: ["rw", "rbind"],
      }]);
      await withMounted(m0, async (dir) => {
        await Deno.writeTextFile(`${dir}/a`, "A");
        await Deno.writeTextFile(`${dir}/b`, "B");
        await Deno.mkdir(`${dir}/d`);
        await Deno.writeTextFile(`${dir}/d/old`, "old");
      });
      await sn.commit("base", "base-active");
      await assert.rejects(sn.stat("base-active"), code(Code.NotFound));
      assert.equal((await sn.stat("base")).kind, "committed");
      assert.deepEqual((await sn.stat("base")).labels, {}); // commit takes only the labels it is given

      const m1 = await sn.prepare("l2-active", "base");
      assert.equal(m1.length, 1);
      assert.equal(m1[0].type, "overlay");
      assert.equal(m1[0].source, "overlay");
      const opts = m1[0].options.filter((o) => o !== "index=off");
      assert.deepEqual(opts, [
        `workdir=${root}/snapshots/2/work`,
        `upperdir=${root}/snapshots/2/fs`,
        `lowerdir=${root}/snapshots/1/fs`,
      ]);
      await withMounted(m1, async (dir) => {
        assert.equal(await Deno.readTextFile(`${dir}/a`), "A");
        await Deno.remove(`${dir}/b`);
        await Deno.remove(`${dir}/d`, { recursive: true });
        await Deno.mkdir(`${dir}/d`);
        await Deno.writeTextFile(`${dir}/d/new`, "new");
        await Deno.writeTextFile(`${dir}/c`, "C");
      });
      // The deletion lives in the upper dir as overlayfs' whiteout: a 0/0 character device.
      const wh = await Deno.lstat(`${root}/snapshots/2/fs/b`);
      assert.ok(wh.isCharDevice, "whiteout is a character device");
      assert.equal(wh.rdev, 0);
      await sn.commit("l2", "l2-active");

      const mv = await sn.view("v", "l2");
      assert.deepEqual(mv[0].options.filter((o) => o !== "index=off"), [
        `lowerdir=${root}/snapshots/2/fs:${root}/snapshots/1/fs`,
      ]);
      await withMounted(mv, async (dir) => {
        assert.equal(await Deno.readTextFile(`${dir}/a`), "A");
        assert.equal(await Deno.readTextFile(`${dir}/c`), "C");
        assert.equal(await exists(`${dir}/b`), false);
        assert.equal(await exists(`${dir}/d/old`), false);
        assert.equal(await Deno.readTextFile(`${dir}/d/new`), "new");
        await assert.rejects(Deno.writeTextFile(`${dir}/x`, "x")); // read-only
      });

      // A view of a single layer is a read-only bind of that layer.
      assert.deepEqual(await sn.view("v1", "base"), [
        { type: "bind", source: `${root}/snapshots/1/fs`, options: ["ro", "rbind"] },
      ]);
      assert.deepEqual(await sn.mounts("v1"), await sn.mounts("v1"));
      await assert.rejects(sn.mounts("nope"), code(Code.NotFound));

      // Parents with children stay.
      await assert.rejects(sn.remove("base"), code(Code.FailedPrecondition));
      await assert.rejects(sn.remove("l2"), code(Code.FailedPrecondition));
      for (const k of ["v", "v1", "l2", "base"]) await sn.remove(k);
      assert.deepEqual(await sn.list(), []);
      assert.deepEqual([...Deno.readDirSync(`${root}/snapshots`)], []);
    } finally {
      sn.close();
    }
  }));

Deno.test("snapshots: errors, labels, filters, usage and persistence", () =>
  withRoot(async (state) => {
    let sn: Snapshotter = await openSnapshotter("overlayfs", state);
    try {
      await sn.prepare("a", "");
      await assert.rejects(sn.prepare("a", ""), code(Code.AlreadyExists));
      await assert.rejects(sn.prepare("b", "missing"), code(Code.NotFound));
      await assert.rejects(sn.prepare("b", "a"), code(Code.InvalidArgument)); // parent not committed
      await assert.rejects(sn.prepare("", ""), code(Code.InvalidArgument));
      await assert.rejects(
        sn.prepare("big", "", { labels: { k: "x".repeat(5000) } }),
        code(Code.InvalidArgument),
      );

      const upper = `${sn.root}/snapshots/1/fs`;
      await Deno.writeFile(`${upper}/blob`, new Uint8Array(64 * 1024));
      const u = await sn.usage("a");
      assert.ok(u.size >= 64 * 1024, `size ${u.size}`);
      assert.equal(u.inodes, 2);
      await sn.commit("A", "a", { labels: { "containerd.io/gc.root": "x", tier: "base" } });
      assert.deepEqual(await sn.usage("A"), u);
      await assert.rejects(sn.commit("A2", "a"), code(Code.NotFound));

      await sn.prepare("b", "A");
      await sn.view("vw", "A");
      await assert.rejects(sn.commit("B", "vw"), code(Code.FailedPrecondition));
      await assert.rejects(sn.commit("A", "b"), code(Code.AlreadyExists));

      const upd = await sn.update({ name: "A", labels: { tier: "db", extra: "1" } }, [
        "labels.tier",
      ]);
      assert.deepEqual(upd.labels, { "containerd.io/gc.root": "x", tier: "db" });
      const upd2 = await sn.update({ name: "A", labels: {} }, ["labels.tier"]);
      assert.deepEqual(upd2.labels, { "containerd.io/gc.root": "x" });
      await assert.rejects(
        sn.update({ name: "A", labels: {} }, ["parent"]),
        code(Code.InvalidArgument),
      );
      const upd3 = await sn.update({ name: "b", labels: { x: "y" } });
      assert.deepEqual(upd3.labels, { x: "y" });
      assert.ok(upd3.updated >= upd3.created);

      const names = async (f: string[]) => (await sn.list(f)).map((i) => i.name).sort();
      assert.deepEqual(await names([]), ["A", "b", "vw"]);
      assert.deepEqual(await names(["kind==active"]), ["b"]);
      assert.deepEqual(await names(["parent==A"]), ["b", "vw"]);
      assert.deepEqual(await names(['labels."containerd.io/gc.root"']), ["A"]);
      assert.deepEqual(await names(["kind==view", "labels.x==y"]), ["b", "vw"]);
      assert.deepEqual((await sn.stat("b")).parent, "A");

      // Metadata survives a restart; stray directories are cleaned up.
      sn.close();
      await Deno.mkdir(`${state}/io.containerd.snapshotter.v1.overlayfs/snapshots/new-crashed`);
      await Deno.mkdir(`${state}/io.containerd.snapshotter.v1.overlayfs/snapshots/999`);
      sn = await openSnapshotter("overlayfs", state);
      assert.equal((await sn.stat("b")).parent, "A");
      await sn.cleanup();
      const dirs = [...Deno.readDirSync(`${sn.root}/snapshots`)].map((e) => e.name).sort();
      assert.deepEqual(dirs, ["1", "2", "3"]);
      // Ids are never reused after a removal.
      await sn.remove("vw");
      await sn.view("vw2", "A");
      assert.ok(await exists(`${sn.root}/snapshots/4`));
    } finally {
      sn.close();
    }
  }));

Deno.test("snapshots/native: copies parents and binds views", () =>
  withRoot(async (state) => {
    const sn = await openSnapshotter("native", state) as NativeSnapshotter;
    try {
      const root = sn.root;
      assert.deepEqual(await sn.prepare("a", ""), [
        { type: "bind", source: `${root}/snapshots/1`, options: ["rbind", "rw"] },
      ]);
      await Deno.writeTextFile(`${root}/snapshots/1/f`, "one");
      await Deno.mkdir(`${root}/snapshots/1/sub`);
      await Deno.link(`${root}/snapshots/1/f`, `${root}/snapshots/1/sub/hard`);
      await Deno.chown(`${root}/snapshots/1/f`, 1234, 5678);
      await Deno.symlink("f", `${root}/snapshots/1/link`);
      await sn.commit("A", "a");

      const m = await sn.prepare("b", "A");
      assert.deepEqual(m, [{
        type: "bind",
        source: `${root}/snapshots/2`,
        options: ["rbind", "rw"],
      }]);
      const st = await Deno.lstat(`${root}/snapshots/2/f`);
      assert.equal(st.uid, 1234);
      assert.equal(st.ino, (await Deno.lstat(`${root}/snapshots/2/sub/hard`)).ino);
      assert.equal(await Deno.readLink(`${root}/snapshots/2/link`), "f");
      await Deno.writeTextFile(`${root}/snapshots/2/f`, "two");
      assert.equal(await Deno.readTextFile(`${root}/snapshots/1/f`), "one"); // a copy, not shared

      // Views of a committed parent bind the parent itself, read-only.
      assert.deepEqual(await sn.view("v", "A"), [
        { type: "bind", source: `${root}/snapshots/1`, options: ["rbind", "ro"] },
      ]);
      await withMounted(await sn.view("v2", "A"), async (dir) => {
        assert.equal(await Deno.readTextFile(`${dir}/f`), "one");
        await assert.rejects(Deno.writeTextFile(`${dir}/x`, "x"));
      });
      await sn.commit("B", "b");
      assert.equal((await sn.stat("B")).parent, "A");
      await assert.rejects(sn.remove("A"), code(Code.FailedPrecondition));
      for (const k of ["v", "v2", "B", "A"]) await sn.remove(k);
      assert.deepEqual([...Deno.readDirSync(`${root}/snapshots`)], []);
    } finally {
      sn.close();
    }
  }));

Deno.test("snapshots: unknown snapshotter names are InvalidArgument", async () => {
  await assert.rejects(openSnapshotter("zfs", "/nonexistent"), code(Code.InvalidArgument));
});
