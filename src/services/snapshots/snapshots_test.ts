import assert from "node:assert/strict";
import { Code, isCode } from "../../errdefs/mod.ts";
import { Kind } from "../../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { callIn, handlersOf, streamed, unary, withFixture } from "../testutil.ts";
import { snapshotsService } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);
type Mounts = { mounts: { type: string; source: string; options: string[] }[] };
type InfoRes = {
  info: { name: string; parent: string; kind: Kind; labels: Record<string, string> };
};

Deno.test("snapshots service: prepare, commit, view, stat, update, usage, list, remove on native", () =>
  withFixture(async ({ md, native, events }) => {
    const h = handlersOf(
      snapshotsService(md, new Map([["native", native]]), events),
      "containerd.services.snapshots.v1.Snapshots",
    );
    const ctx = callIn("ns1");
    const seen = events.subscribe(['topic~="^/snapshot/"']);
    const prepared = await unary<Mounts>(h, "prepare", {
      snapshotter: "native",
      key: "extract",
      parent: "",
      labels: {},
    }, ctx);
    assert.equal(prepared.mounts.length, 1);
    assert.equal(prepared.mounts[0].type, "bind");
    await Deno.writeTextFile(`${prepared.mounts[0].source}/hello`, "hi");
    assert.deepEqual(
      (await unary<Mounts>(h, "mounts", { snapshotter: "native", key: "extract" }, ctx)).mounts,
      prepared.mounts,
    );
    await unary(h, "commit", {
      snapshotter: "native",
      name: "layer1",
      key: "extract",
      labels: { l: "1" },
    }, ctx);
    const view = await unary<Mounts>(h, "view", {
      snapshotter: "native",
      key: "v",
      parent: "layer1",
      labels: {},
    }, ctx);
    assert.ok(view.mounts[0].options.includes("ro"));
    assert.equal(await Deno.readTextFile(`${view.mounts[0].source}/hello`), "hi");
    const st = await unary<InfoRes>(h, "stat", { snapshotter: "native", key: "layer1" }, ctx);
    assert.equal(st.info.kind, Kind.COMMITTED);
    assert.equal(
      (await unary<InfoRes>(h, "stat", { snapshotter: "native", key: "v" }, ctx)).info.parent,
      "layer1",
    );
    const up = await unary<InfoRes>(h, "update", {
      snapshotter: "native",
      info: { name: "layer1", labels: { m: "2" } },
      updateMask: { paths: ["labels.m"] },
    }, ctx);
    assert.deepEqual(up.info.labels, { l: "1", m: "2" });
    const usage = await unary<{ size: bigint; inodes: bigint }>(h, "usage", {
      snapshotter: "native",
      key: "layer1",
    }, ctx);
    assert.ok(usage.size > 0n && usage.inodes >= 1n);
    const listed = (await streamed<{ info: { name: string }[] }>(h, "list", {
      snapshotter: "native",
      filters: [],
    }, ctx))
      .flatMap((b) => b.info.map((i) => i.name)).sort();
    assert.deepEqual(listed, ["layer1", "v"]);
    assert.deepEqual(
      (await streamed(h, "list", { snapshotter: "native", filters: [] }, callIn("other"))).length,
      0,
    );
    await assert.rejects(
      unary(h, "remove", { snapshotter: "native", key: "layer1" }, ctx),
      code(Code.FailedPrecondition),
    );
    await unary(h, "remove", { snapshotter: "native", key: "v" }, ctx);
    await unary(h, "remove", { snapshotter: "native", key: "layer1" }, ctx);
    await unary(h, "cleanup", { snapshotter: "native" }, ctx);
    const topics: string[] = [];
    for (let i = 0; i < 4; i++) topics.push((await seen.next()).value!.topic);
    assert.deepEqual(topics, [
      "/snapshot/prepare",
      "/snapshot/commit",
      "/snapshot/remove",
      "/snapshot/remove",
    ]);
    await seen.return?.();
  }));

Deno.test("snapshots service: unknown snapshotter, missing namespace and unknown keys", () =>
  withFixture(async ({ md, native, events }) => {
    const h = handlersOf(
      snapshotsService(md, new Map([["native", native]]), events),
      "containerd.services.snapshots.v1.Snapshots",
    );
    await assert.rejects(
      unary(h, "stat", { snapshotter: "zfs", key: "x" }, callIn("ns")),
      (e) => code(Code.InvalidArgument)(e) && /snapshotter not loaded: zfs/.test(String(e)),
    );
    await assert.rejects(
      unary(h, "stat", { snapshotter: "", key: "x" }, callIn("ns")),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "stat", { snapshotter: "native", key: "x" }, callIn()),
      code(Code.FailedPrecondition),
    );
    await assert.rejects(
      unary(h, "stat", { snapshotter: "native", key: "x" }, callIn("ns")),
      code(Code.NotFound),
    );
    await assert.rejects(
      unary(
        h,
        "prepare",
        { snapshotter: "native", key: "k", parent: "missing", labels: {} },
        callIn("ns"),
      ),
      code(Code.NotFound),
    );
  }));
