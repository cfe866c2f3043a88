import assert from "node:assert/strict";
import { Code, isCode } from "../../errdefs/mod.ts";
import { callIn, handlersOf, unary, withFixture } from "../testutil.ts";
import { imagesService } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);
const TARGET = {
  mediaType: "application/vnd.oci.image.index.v1+json",
  digest: "sha256:" + "a".repeat(64),
  size: 321n,
};
type ImageRes = {
  image: { name: string; labels: Record<string, string>; target: { size: bigint; digest: string } };
};

Deno.test("images service: create, get, list, update, delete (sync runs a collection)", () =>
  withFixture(async ({ md, events }) => {
    let collections = 0;
    const h = handlersOf(
      imagesService(md, events, () => ({ collect: () => Promise.resolve(collections++) })),
      "containerd.services.images.v1.Images",
    );
    const ctx = callIn("ns1");
    const seen = events.subscribe(['topic~="^/images/"']);
    const made = await unary<ImageRes>(h, "create", {
      image: { name: "docker.io/library/busybox:1", labels: { x: "1" }, target: TARGET },
    }, ctx);
    assert.equal(made.image.target.size, 321n);
    await assert.rejects(
      unary(h, "create", {
        image: { name: "docker.io/library/busybox:1", labels: {}, target: TARGET },
      }, ctx),
      code(Code.AlreadyExists),
    );
    await assert.rejects(
      unary(h, "create", { image: { name: "", labels: {}, target: TARGET } }, ctx),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "create", { image: { name: "n", labels: {} } }, ctx),
      code(Code.InvalidArgument),
    );
    assert.equal(
      (await unary<ImageRes>(h, "get", { name: "docker.io/library/busybox:1" }, ctx)).image.labels
        .x,
      "1",
    );
    await assert.rejects(unary(h, "get", { name: "nope" }, ctx), code(Code.NotFound));
    const listed = await unary<{ images: unknown[] }>(
      h,
      "list",
      { filters: ['name~="busybox"'] },
      ctx,
    );
    assert.equal(listed.images.length, 1);
    assert.equal(
      (await unary<{ images: unknown[] }>(h, "list", { filters: [] }, callIn("ns2"))).images.length,
      0,
    );
    const up = await unary<ImageRes>(h, "update", {
      image: { name: "docker.io/library/busybox:1", labels: { y: "2" } },
      updateMask: { paths: ["labels.y"] },
    }, ctx);
    assert.deepEqual(up.image.labels, { x: "1", y: "2" });
    await unary(h, "delete", { name: "docker.io/library/busybox:1", sync: false }, ctx);
    assert.equal(collections, 0, "an ordinary delete leaves the collection to the scheduler");
    await unary(h, "create", { image: { name: "b", labels: {}, target: TARGET } }, ctx);
    await unary(h, "delete", { name: "b", sync: true }, ctx);
    assert.equal(collections, 1, "a sync delete waits for a collection");
    await assert.rejects(unary(h, "delete", { name: "b", sync: false }, ctx), code(Code.NotFound));
    const topics: string[] = [];
    for (let i = 0; i < 5; i++) topics.push((await seen.next()).value!.topic);
    assert.deepEqual(topics, [
      "/images/create",
      "/images/update",
      "/images/delete",
      "/images/create",
      "/images/delete",
    ]);
    await seen.return?.();
  }));
