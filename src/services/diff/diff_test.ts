import assert from "node:assert/strict";
import { Code, isCode } from "../../errdefs/mod.ts";
import { NamespacedContent } from "../../metadata/mod.ts";
import { mountsToProto } from "../snapshots/mod.ts";
import { callIn, handlersOf, unary, withFixture } from "../testutil.ts";
import { diffService } from "./mod.ts";

const SVC = "containerd.services.diff.v1.Diff";

interface Desc {
  mediaType: string;
  digest: string;
  size: bigint;
}

Deno.test("diff service: Diff writes a layer blob of a snapshot's changes, Apply unpacks it elsewhere", () =>
  withFixture(async (f) => {
    const content = new NamespacedContent(f.content, f.md);
    const h = handlersOf(diffService(content), SVC);
    const ctx = callIn("ns1");
    const sn = f.md.snapshotter(f.native);

    const upper = await sn.prepare("ns1", "work", "");
    await Deno.mkdir(`${upper[0].source}/etc`);
    await Deno.writeTextFile(`${upper[0].source}/etc/greeting`, "hello layer\n");
    const { diff } = await unary<{ diff: Desc }>(h, "diff", {
      left: [],
      right: mountsToProto(upper),
      labels: { "test.label": "yes" },
    }, ctx);
    assert.equal(diff.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
    const rec = f.md.content.info("ns1", diff.digest);
    assert.equal(rec.size, Number(diff.size));
    assert.equal(rec.labels["test.label"], "yes");
    assert.match(rec.labels["containerd.io/uncompressed"], /^sha256:/);

    const target = await sn.prepare("ns1", "target", "");
    const { applied } = await unary<{ applied: Desc }>(h, "apply", {
      diff,
      mounts: mountsToProto(target),
    }, ctx);
    assert.equal(applied.digest, rec.labels["containerd.io/uncompressed"]);
    assert.equal(await Deno.readTextFile(`${target[0].source}/etc/greeting`), "hello layer\n");

    // Another namespace does not see the blob.
    const other = await unary(h, "apply", { diff, mounts: mountsToProto(target) }, callIn("ns2"))
      .then(() => undefined, (e) => e);
    assert.ok(isCode(other, Code.NotFound), String(other));
    // Mounts it cannot write to are refused clearly.
    const ro = await unary(h, "apply", {
      diff,
      mounts: [{ type: "bind", source: target[0].source, options: ["ro", "rbind"] }],
    }, ctx).then(() => undefined, (e) => e);
    assert.ok(isCode(ro, Code.Unimplemented), String(ro));
    const noDesc = await unary(h, "apply", { mounts: mountsToProto(target) }, ctx).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(isCode(noDesc, Code.InvalidArgument), String(noDesc));
  }));
