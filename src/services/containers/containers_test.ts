import assert from "node:assert/strict";
import { Code, isCode } from "../../errdefs/mod.ts";
import { callIn, handlersOf, streamed, unary, withFixture } from "../testutil.ts";
import { containersService } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);
const spec = {
  typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec",
  value: new Uint8Array([123, 125]),
};
const options = { typeUrl: "containerd.runc.v1.Options", value: new Uint8Array([1]) };
type CRes = {
  container: {
    id: string;
    labels: Record<string, string>;
    runtime: { name: string; options?: { value: Uint8Array } };
    extensions: Record<string, unknown>;
  };
};

function container(id: string, labels: Record<string, string> = {}) {
  return {
    container: {
      id,
      labels,
      image: "img",
      runtime: { name: "io.containerd.runc.v2", options },
      spec,
      snapshotter: "overlayfs",
      snapshotKey: id,
      extensions: { ext: options },
    },
  };
}

Deno.test("containers service: records round-trip; filters, masks, stream, events, error codes", () =>
  withFixture(async ({ md, events }) => {
    const h = handlersOf(
      containersService(md, events),
      "containerd.services.containers.v1.Containers",
    );
    const seen = events.subscribe(['topic~="^/containers/"']);
    const ctx = callIn("ns1");
    const made = await unary<CRes>(h, "create", container("c1", { app: "web" }), ctx);
    assert.deepEqual(made.container.runtime.options?.value, new Uint8Array([1]));
    assert.ok("ext" in made.container.extensions);
    await unary(h, "create", container("c2", { app: "db" }), ctx);
    await assert.rejects(unary(h, "create", container("c1"), ctx), code(Code.AlreadyExists));
    for (const bad of ["..", "a/b", "-x", ""]) {
      await assert.rejects(
        unary(h, "create", container(bad), ctx),
        code(Code.InvalidArgument),
        bad,
      );
    }
    await assert.rejects(unary(h, "create", {}, ctx), code(Code.InvalidArgument));
    await assert.rejects(
      unary(h, "list", { filters: [] }, callIn()),
      code(Code.FailedPrecondition),
    );
    await assert.rejects(
      unary(h, "list", { filters: [] }, callIn("bad/ns")),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "list", { filters: ["labels.app=="] }, ctx),
      code(Code.InvalidArgument),
    );
    const ids = (r: { containers: { id: string }[] }) => r.containers.map((c) => c.id);
    assert.deepEqual(ids(await unary(h, "list", { filters: ["labels.app==db", "id==c1"] }, ctx)), [
      "c1",
      "c2",
    ]);
    assert.deepEqual(
      ids(
        await unary(
          h,
          "list",
          { filters: ["runtime.name==io.containerd.runc.v2,labels.app==web"] },
          ctx,
        ),
      ),
      ["c1"],
    );
    assert.deepEqual(ids(await unary(h, "list", { filters: [] }, callIn("ns2"))), []);
    const stream = await streamed<{ container: { id: string } }>(
      h,
      "listStream",
      { filters: [] },
      ctx,
    );
    assert.deepEqual(stream.map((m) => m.container.id), ["c1", "c2"]);
    const up = await unary<CRes>(h, "update", {
      container: { id: "c1", labels: { tier: "1" } },
      updateMask: { paths: ["labels.tier"] },
    }, ctx);
    assert.deepEqual(up.container.labels, { app: "web", tier: "1" });
    await assert.rejects(
      unary(h, "update", { container: { id: "" } }, ctx),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "update", {
        container: { id: "nope", labels: {} },
        updateMask: { paths: ["labels"] },
      }, ctx),
      code(Code.NotFound),
    );
    await unary(h, "delete", { id: "c1" }, ctx);
    await assert.rejects(unary(h, "get", { id: "c1" }, ctx), code(Code.NotFound));
    const topics: string[] = [];
    for (let i = 0; i < 4; i++) topics.push((await seen.next()).value!.topic);
    assert.deepEqual(topics, [
      "/containers/create",
      "/containers/create",
      "/containers/update",
      "/containers/delete",
    ]);
    await seen.return?.();
  }));

Deno.test("containers service: Get answers what the store holds now, after every kind of change", () =>
  withFixture(async ({ md, events }) => {
    const h = handlersOf(
      containersService(md, events),
      "containerd.services.containers.v1.Containers",
    );
    const ctx = callIn("ns1");
    const other = callIn("ns2");
    await unary(h, "create", container("c1", { v: "1" }), ctx);
    await unary(h, "create", container("c1", { v: "other" }), other);
    const get = (c = ctx) => unary<CRes>(h, "get", { id: "c1" }, c);
    assert.equal((await get()).container.labels.v, "1");
    assert.equal((await get()).container.labels.v, "1");
    assert.equal((await get(other)).container.labels.v, "other");
    // Changed through the service...
    await unary(h, "update", {
      container: { id: "c1", labels: { v: "2" } },
      updateMask: { paths: ["labels"] },
    }, ctx);
    assert.equal((await get()).container.labels.v, "2");
    // ... or in the store directly (as the tasks service and the GC may).
    md.containers.update("ns1", { ...md.containers.get("ns1", "c1"), labels: { v: "3" } }, [
      "labels",
    ]);
    assert.equal((await get()).container.labels.v, "3");
    assert.equal((await get(other)).container.labels.v, "other");
    await unary(h, "delete", { id: "c1" }, ctx);
    await assert.rejects(get(), code(Code.NotFound));
    await unary(h, "create", container("c1", { v: "again" }), ctx);
    assert.equal((await get()).container.labels.v, "again");
  }));
