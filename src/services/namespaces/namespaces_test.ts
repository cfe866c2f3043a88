import assert from "node:assert/strict";
import { Code, isCode } from "../../errdefs/mod.ts";
import { callIn, handlersOf, unary, withFixture } from "../testutil.ts";
import { namespacesService } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);
type NsRes = { namespace: { name: string; labels: Record<string, string> } };

Deno.test("namespaces service: create, get, list, update with masks, delete only when empty, events", () =>
  withFixture(async ({ md, events }) => {
    const h = handlersOf(
      namespacesService(md, events),
      "containerd.services.namespaces.v1.Namespaces",
    );
    const seen = events.subscribe(['topic~="^/namespaces/"']);
    const ctx = callIn("default");
    await unary(h, "create", { namespace: { name: "a", labels: { k: "v" } } }, ctx);
    await unary(h, "create", { namespace: { name: "b", labels: {} } }, callIn());
    await assert.rejects(
      unary(h, "create", { namespace: { name: "a", labels: {} } }, ctx),
      code(Code.AlreadyExists),
    );
    await assert.rejects(
      unary(h, "create", { namespace: { name: "a/b", labels: {} } }, ctx),
      code(Code.InvalidArgument),
    );
    await assert.rejects(unary(h, "create", {}, ctx), code(Code.InvalidArgument));
    assert.deepEqual((await unary<NsRes>(h, "get", { name: "a" }, ctx)).namespace, {
      name: "a",
      labels: { k: "v" },
    });
    const names = (r: { namespaces: { name: string }[] }) => r.namespaces.map((n) => n.name);
    assert.deepEqual(names(await unary(h, "list", { filter: "" }, ctx)), ["a", "b"]);
    assert.deepEqual(names(await unary(h, "list", { filter: "labels.k==v" }, ctx)), ["a"]);
    const up = await unary<NsRes>(h, "update", {
      namespace: { name: "a", labels: { z: "1" } },
      updateMask: { paths: ["labels.z"] },
    }, ctx);
    assert.deepEqual(up.namespace.labels, { k: "v", z: "1" });
    const replaced = await unary<NsRes>(h, "update", {
      namespace: { name: "a", labels: { only: "me" } },
    }, ctx);
    assert.deepEqual(replaced.namespace.labels, { only: "me" });
    await assert.rejects(
      unary(
        h,
        "update",
        { namespace: { name: "a", labels: {} }, updateMask: { paths: ["name"] } },
        ctx,
      ),
      code(Code.InvalidArgument),
    );
    md.images.create("a", {
      name: "img",
      target: { mediaType: "x/y", digest: "sha256:" + "c".repeat(64), size: 1 },
    });
    await assert.rejects(
      unary(h, "delete", { name: "a" }, ctx),
      (e) => code(Code.FailedPrecondition)(e) && /images/.test(String(e)),
    );
    md.images.delete("a", "img");
    await unary(h, "delete", { name: "a" }, ctx);
    await assert.rejects(unary(h, "get", { name: "a" }, ctx), code(Code.NotFound));
    const got: string[] = [];
    for (let i = 0; i < 5; i++) {
      const { value } = await seen.next();
      got.push(`${value!.namespace} ${value!.topic}`);
    }
    assert.deepEqual(got, [
      "default /namespaces/create",
      "b /namespaces/create", // no caller namespace: the event goes out in the new one
      "default /namespaces/update",
      "default /namespaces/update",
      "a /namespaces/delete",
    ]);
    await seen.return?.();
  }));
