import assert from "node:assert/strict";
import { Code, isCode } from "../../errdefs/mod.ts";
import { callIn, handlersOf, unary, withFixture } from "../testutil.ts";
import { leasesService } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);

Deno.test("leases service: create, list, resources, delete", () =>
  withFixture(async ({ md }) => {
    const h = handlersOf(
      leasesService(md, () => undefined),
      "containerd.services.leases.v1.Leases",
    );
    const ctx = callIn("ns1");
    const made = await unary<{ lease: { id: string; labels: Record<string, string> } }>(
      h,
      "create",
      { id: "pull-1", labels: { "containerd.io/gc.expire": "2100-01-01T00:00:00Z" } },
      ctx,
    );
    assert.equal(made.lease.id, "pull-1");
    await assert.rejects(
      unary(h, "create", { id: "pull-1", labels: {} }, ctx),
      code(Code.AlreadyExists),
    );
    await assert.rejects(
      unary(h, "create", { id: "", labels: {} }, ctx),
      code(Code.InvalidArgument),
    );
    const resource = { id: "sha256:" + "b".repeat(64), type: "content" };
    await unary(h, "addResource", { id: "pull-1", resource }, ctx);
    await assert.rejects(
      unary(h, "addResource", { id: "pull-1", resource: { id: "x", type: "bogus" } }, ctx),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "addResource", { id: "nope", resource }, ctx),
      code(Code.NotFound),
    );
    assert.deepEqual(
      (await unary<{ resources: unknown[] }>(h, "listResources", { id: "pull-1" }, ctx)).resources,
      [resource],
    );
    await unary(h, "deleteResource", { id: "pull-1", resource }, ctx);
    assert.deepEqual(
      (await unary<{ resources: unknown[] }>(h, "listResources", { id: "pull-1" }, ctx)).resources,
      [],
    );
    assert.equal(
      (await unary<{ leases: unknown[] }>(h, "list", { filters: ["id==pull-1"] }, ctx)).leases
        .length,
      1,
    );
    await unary(h, "delete", { id: "pull-1", sync: true }, ctx);
    await assert.rejects(
      unary(h, "delete", { id: "pull-1", sync: false }, ctx),
      code(Code.NotFound),
    );
    await assert.rejects(
      unary(h, "list", { filters: [] }, callIn()),
      code(Code.FailedPrecondition),
    );
  }));
