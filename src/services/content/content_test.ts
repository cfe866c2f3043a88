import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { digestOf } from "../../content/mod.ts";
import { Code, isCode } from "../../errdefs/mod.ts";
import {
  WriteAction,
  WriteContentRequestSchema,
} from "../../gen/containerd/services/content/v1/content_pb.ts";
import {
  callIn,
  from,
  type Handlers,
  handlersOf,
  streamed,
  unary,
  withFixture,
} from "../testutil.ts";
import { NamespacedContent } from "../../metadata/mod.ts";
import { contentService } from "./mod.ts";

const enc = new TextEncoder();
const code = (c: Code) => (e: unknown) => isCode(e, c);
type Init = Parameters<typeof create<typeof WriteContentRequestSchema>>[1];
type Info = { info: { size: bigint; labels: Record<string, string> } };

function write(h: Handlers, ns: string, reqs: Init[]) {
  return streamed<{ offset: bigint; digest: string; total: bigint }>(
    h,
    "write",
    from(reqs.map((r) => create(WriteContentRequestSchema, r))),
    callIn(ns),
  );
}

Deno.test("content service: write in pieces, commit with labels, read back at an offset", () =>
  withFixture(async ({ content, md, events }) => {
    const h = handlersOf(
      contentService(new NamespacedContent(content, md), events),
      "containerd.services.content.v1.Content",
    );
    const ctx = callIn("ns1");
    const data = enc.encode("hello, berth content");
    const digest = await digestOf(data);
    const deletes = events.subscribe(['topic=="/content/delete"']);
    const answers = await write(h, "ns1", [
      { action: WriteAction.STAT, ref: "r1", total: BigInt(data.length) },
      { action: WriteAction.WRITE, ref: "r1", data: data.subarray(0, 5) },
      {
        action: WriteAction.COMMIT,
        ref: "r1",
        offset: 5n,
        data: data.subarray(5),
        expected: digest,
        labels: { a: "b" },
      },
    ]);
    assert.deepEqual(answers.map((a) => a.offset), [0n, 5n, BigInt(data.length)]);
    assert.equal(answers[0].total, BigInt(data.length));
    assert.equal(answers[2].digest, digest);

    const { info } = await unary<Info>(h, "info", { digest }, ctx);
    assert.equal(info.size, BigInt(data.length));
    assert.deepEqual(info.labels, { a: "b" });
    const chunks = await streamed<{ offset: bigint; data: Uint8Array }>(h, "read", {
      digest,
      offset: 7n,
      size: 5n,
    }, ctx);
    assert.equal(chunks[0].offset, 7n);
    assert.equal(
      new TextDecoder().decode(new Uint8Array(chunks.flatMap((c) => [...c.data]))),
      "berth",
    );
    await assert.rejects(
      streamed(h, "read", { digest, offset: 999n, size: 0n }, ctx),
      code(Code.OutOfRange),
    );
    const listed = await streamed<{ info: unknown[] }>(
      h,
      "list",
      { filters: ["labels.a==b"] },
      ctx,
    );
    assert.equal(listed[0].info.length, 1);
    const updated = await unary<Info>(h, "update", {
      info: { digest, labels: { c: "d" } },
      updateMask: { paths: ["labels.c"] },
    }, ctx);
    assert.deepEqual(updated.info.labels, { a: "b", c: "d" });

    // Namespaces are separate: ns2 does not see the blob, and writing the
    // same bytes there is AlreadyExists once it is recorded (shared content).
    const ctx2 = callIn("ns2");
    await assert.rejects(unary(h, "info", { digest }, ctx2), code(Code.NotFound));
    await assert.rejects(
      write(h, "ns2", [{ action: WriteAction.STAT, ref: "x", expected: digest }]),
      code(Code.AlreadyExists),
    );
    assert.equal((await unary<Info>(h, "info", { digest }, ctx2)).info.size, BigInt(data.length));

    await unary(h, "delete", { digest }, ctx);
    await assert.rejects(unary(h, "info", { digest }, ctx), code(Code.NotFound));
    const ev = await deletes.next();
    assert.equal(ev.value?.namespace, "ns1");
    await deletes.return?.();
  }));

Deno.test("content service: partial ingests have a status, resume, abort; bad input has the right code", () =>
  withFixture(async ({ content, md, events }) => {
    const h = handlersOf(
      contentService(new NamespacedContent(content, md), events),
      "containerd.services.content.v1.Content",
    );
    const ctx = callIn("ns1");
    await write(h, "ns1", [{
      action: WriteAction.WRITE,
      ref: "part",
      total: 10n,
      data: enc.encode("12345"),
    }]);
    const { status } = await unary<{ status: { offset: bigint; total: bigint; ref: string } }>(
      h,
      "status",
      { ref: "part" },
      ctx,
    );
    assert.deepEqual([status.ref, status.offset, status.total], ["part", 5n, 10n]);
    assert.equal(
      (await unary<{ statuses: unknown[] }>(h, "listStatuses", { filters: ["ref==part"] }, ctx))
        .statuses.length,
      1,
    );
    await assert.rejects(unary(h, "status", { ref: "part" }, callIn("other")), code(Code.NotFound));
    // A write at the wrong offset is OutOfRange; a commit with the wrong digest keeps the ingest.
    await assert.rejects(
      write(h, "ns1", [{
        action: WriteAction.WRITE,
        ref: "part",
        offset: 3n,
        data: enc.encode("x"),
      }]),
      code(Code.OutOfRange),
    );
    const wrong = "sha256:" + "0".repeat(64);
    await assert.rejects(
      write(h, "ns1", [{
        action: WriteAction.COMMIT,
        ref: "part",
        offset: 5n,
        data: enc.encode("67890"),
        expected: wrong,
      }]),
      code(Code.FailedPrecondition),
    );
    await unary(h, "abort", { ref: "part" }, ctx);
    await assert.rejects(unary(h, "status", { ref: "part" }, ctx), code(Code.NotFound));
    await assert.rejects(
      write(h, "ns1", [{ action: WriteAction.STAT, ref: "" }]),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "info", { digest: "sha256:nothex" }, ctx),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "info", { digest: wrong }, callIn()),
      code(Code.FailedPrecondition),
    );
  }));
