import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { spawn } from "../spawn/mod.ts";
import { ContentStore, Digester, DigestingStream, digestOf } from "./mod.ts";

const enc = new TextEncoder();

async function withStore(fn: (store: ContentStore, root: string) => Promise<void>) {
  const root = await Deno.makeTempDir({ prefix: "berth-content-" });
  try {
    await fn(await ContentStore.open(root), root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function streamDigest(
  stream: ReadableStream<Uint8Array>,
): Promise<{ digest: string; size: number }> {
  const d = new Digester();
  let size = 0;
  for await (const c of stream) {
    d.update(c);
    size += c.length;
  }
  return { digest: d.digest(), size };
}

async function blobNames(root: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(`${root}/blobs/sha256`)) names.push(e.name);
  return names;
}

const code = (c: Code) => (e: unknown) => isCode(e, c);

Deno.test("content: write, commit, info, read, list, delete", () =>
  withStore(async (store, root) => {
    const data = enc.encode("hello berth");
    const want = digestOf(data);
    const w = await store.writer("ref-1", { expectedSize: data.length, expectedDigest: want });
    await w.write(data.subarray(0, 5));
    assert.equal(w.status().offset, 5);
    await w.write(data.subarray(5));
    assert.equal(w.digest(), want);
    assert.equal(await w.commit(data.length, want), want);

    const info = await store.info(want);
    assert.equal(info.size, data.length);
    assert.equal(info.digest, want);
    const path = `${root}/blobs/sha256/${want.slice(7)}`;
    assert.equal((await Deno.stat(path)).mode! & 0o222, 0, "blobs are read-only");
    assert.equal(
      new TextDecoder().decode(await new Response(await store.read(want)).arrayBuffer()),
      "hello berth",
    );
    assert.equal(
      new TextDecoder().decode(
        await new Response(await store.read(want, { offset: 6, length: 3 })).arrayBuffer(),
      ),
      "ber",
    );
    await assert.rejects(store.read(want, { offset: 12 }), code(Code.InvalidArgument));
    const ra = await store.readerAt(want);
    const buf = new Uint8Array(4);
    assert.equal(await ra.readAt(buf, 7), 4);
    assert.equal(new TextDecoder().decode(buf), "erth");
    assert.equal(await ra.readAt(buf, 11), 0);
    ra.close();

    assert.deepEqual((await store.list()).map((i) => i.digest), [want]);
    assert.deepEqual((await store.list([`digest==${want}`])).length, 1);
    assert.deepEqual((await store.list(["digest==sha256:nope"])).length, 0);
    assert.deepEqual(await store.listStatuses(), []); // ingest gone after commit

    await store.delete(want);
    await assert.rejects(store.info(want), code(Code.NotFound));
    await assert.rejects(store.delete(want), code(Code.NotFound));
    await assert.rejects(store.read(want), code(Code.NotFound));
    await assert.rejects(store.info("sha256:xyz"), code(Code.InvalidArgument));
    await assert.rejects(store.info("md5:" + "0".repeat(32)), code(Code.InvalidArgument));
  }));

Deno.test("content: large blobs stream in chunks and hash correctly", () =>
  withStore(async (store) => {
    const w = await store.writer("big");
    const d = new Digester();
    const chunk = new Uint8Array(256 * 1024);
    for (let i = 0; i < 24; i++) {
      chunk.fill(i);
      d.update(chunk);
      await w.write(chunk);
    }
    const digest = await w.commit(24 * chunk.length, d.digest());
    const got = await streamDigest(await store.read(digest));
    assert.deepEqual(got, { digest, size: 24 * chunk.length });
    const tail = await streamDigest(await store.read(digest, { offset: 23 * chunk.length }));
    assert.equal(tail.digest, digestOf(new Uint8Array(chunk.length).fill(23)));
  }));

Deno.test("content: a writer resumes its ref from the offset", () =>
  withStore(async (store) => {
    const data = enc.encode("0123456789abcdef");
    const want = digestOf(data);
    const w1 = await store.writer("resume-me", { expectedSize: data.length });
    await w1.write(data.subarray(0, 7));
    await w1.close();
    await w1.close(); // idempotent

    const st = await store.status("resume-me");
    assert.equal(st.offset, 7);
    assert.equal(st.total, data.length);
    assert.equal(st.ref, "resume-me");

    const w2 = await store.writer("resume-me", { expectedSize: data.length, expectedDigest: want });
    assert.equal(w2.status().offset, 7);
    assert.equal((await store.status("resume-me")).expected, want);
    await w2.write(data.subarray(7));
    assert.equal(await w2.commit(data.length, want), want);
    await assert.rejects(store.status("resume-me"), code(Code.NotFound));
  }));

Deno.test("content: a ref in use is locked; other refs are not", () =>
  withStore(async (store) => {
    const w = await store.writer("busy");
    await assert.rejects(store.writer("busy"), (e) => {
      assert.ok(isCode(e, Code.Unavailable));
      assert.match((e as Error).message, /ref busy locked/);
      return true;
    });
    const other = await store.writer("other");
    await other.close();
    await w.close();
    const again = await store.writer("busy");
    await again.close();
    assert.deepEqual((await store.listStatuses(["ref~=^bu"])).map((s) => s.ref), ["busy"]);
    assert.equal((await store.listStatuses()).length, 2);
    await store.abort("busy");
    await store.abort("other");
    await assert.rejects(store.abort("busy"), code(Code.NotFound));
  }));

Deno.test("content: wrong digest or size commits nothing and leaves the ingest", () =>
  withStore(async (store, root) => {
    const data = enc.encode("payload");
    const w = await store.writer("bad");
    await w.write(data);
    await assert.rejects(
      w.commit(data.length, digestOf("something else")),
      code(Code.FailedPrecondition),
    );
    assert.deepEqual(await blobNames(root), []);
    assert.equal((await store.status("bad")).offset, data.length);
    await assert.rejects(w.write(data), code(Code.FailedPrecondition)); // closed by the failed commit

    const w2 = await store.writer("bad"); // lock released, resumes
    assert.equal(w2.status().offset, data.length);
    await assert.rejects(w2.commit(data.length + 1), code(Code.FailedPrecondition));
    assert.deepEqual(await blobNames(root), []);

    const w3 = await store.writer("bad");
    await w3.truncate(0);
    await w3.write(enc.encode("fixed"));
    assert.equal(await w3.commit(5, digestOf("fixed")), digestOf("fixed"));
  }));

Deno.test("content: committing existing content is AlreadyExists and harmless", () =>
  withStore(async (store, root) => {
    const data = enc.encode("same bytes");
    const digest = digestOf(data);
    const w1 = await store.writer("a");
    await w1.write(data);
    await w1.commit(data.length, digest);

    await assert.rejects(store.writer("b", { expectedDigest: digest }), code(Code.AlreadyExists));
    const w2 = await store.writer("b"); // no expected digest: only known at commit
    await w2.write(data);
    await assert.rejects(w2.commit(data.length, digest), code(Code.AlreadyExists));
    assert.deepEqual(await store.listStatuses(), []); // ingest dropped
    assert.deepEqual(await blobNames(root), [digest.slice(7)]);
    assert.equal((await store.info(digest)).size, data.length);
    const w3 = await store.writer("b"); // and the ref is free again
    await w3.close();
    await store.abort("b");
  }));

Deno.test("content: a writer killed mid-ingest leaves only ingest state", () =>
  withStore(async (store, root) => {
    const script = new URL("./testdata/crash_writer.ts", import.meta.url).pathname;
    const child = spawn(Deno.execPath(), ["run", "-A", "--quiet", script, root, "crash-ref"], {
      stdout: "piped",
      stderr: "inherit",
    });
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    try {
      while (!seen.includes("written")) {
        const { value, done } = await reader.read();
        if (done) break;
        seen += value;
      }
    } finally {
      child.kill("SIGKILL");
      await child.status;
      await reader.cancel();
    }
    assert.ok(seen.includes("written"), seen);
    assert.deepEqual(await blobNames(root), []);
    const st = await store.status("crash-ref");
    assert.equal(st.offset, 2 << 20);
    assert.equal(st.total, 4 << 20);

    const w = await store.writer("crash-ref", { expectedSize: 4 << 20 });
    assert.equal(w.status().offset, 2 << 20);
    const chunk = new Uint8Array(1 << 20).fill(7);
    await w.write(chunk);
    await w.write(chunk);
    const full = new Digester();
    for (let i = 0; i < 4; i++) full.update(chunk);
    assert.equal(await w.commit(4 << 20, full.digest()), full.digest());
  }));

Deno.test("content: DigestingStream passes bytes through unchanged, digesting and counting them", async () => {
  const parts = [
    new TextEncoder().encode("hello "),
    new Uint8Array(0),
    new TextEncoder().encode("layer"),
  ];
  const digesting = new DigestingStream();
  const out = await new Response(ReadableStream.from(parts).pipeThrough(digesting)).text();
  assert.equal(out, "hello layer");
  assert.equal(digesting.size, 11);
  assert.equal(digesting.digest(), digestOf("hello layer"));
});
