import assert from "node:assert/strict";
import { Code, isCode, unavailable } from "../errdefs/mod.ts";
import type { BlobWriter, ContentAccess } from "./backend.ts";
import { openWriter } from "./blobs.ts";

/** A content store whose writer() fails with each of `errors` in turn, then opens. */
function failingThen(errors: Error[]): { content: ContentAccess; calls: () => number } {
  let calls = 0;
  const writer = { offset: 0 } as unknown as BlobWriter;
  const content = {
    writer: () => {
      const err = errors[calls++];
      return err === undefined ? Promise.resolve(writer) : Promise.reject(err);
    },
  } as unknown as ContentAccess;
  return { content, calls: () => calls };
}

Deno.test("openWriter waits while another writer holds the ingest", async () => {
  const locked = unavailable("ref import-x locked for 1s (since 2026-12-02T00:00:00Z)");
  const { content, calls } = failingThen([locked, locked]);
  assert.ok(await openWriter(content, "import-x"));
  assert.equal(calls(), 3);
});

Deno.test("openWriter gives up at once when the daemon is gone, instead of retrying forever", async () => {
  const gone = unavailable("ttrpc: connection closed by server");
  const { content, calls } = failingThen([gone, gone]);
  await assert.rejects(openWriter(content, "import-x"), (e) => isCode(e, Code.Unavailable));
  assert.equal(calls(), 1);
});
