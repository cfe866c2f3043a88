/**
 * Layers built to escape or exhaust: `..` entries, absolute paths,
 * symlinks and hard links aimed outside the root, a symlinked parent
 * directory, device nodes, whiteouts of `..`, a huge declared size, a GNU
 * sparse entry, a gzip bomb, and a tar with very many entries (1 million
 * under BERTH_STRESS=1). A canary directory beside the root must be
 * untouched after each, and every error names the entry.
 */
import assert from "node:assert/strict";
import { applyLayer, packTar, type TarHeader, type TarOut } from "../src/archive/mod.ts";
import { BerthError, Code } from "../src/errdefs/mod.ts";
import { concat, listTree, STRESS } from "./support/fuzz.ts";

const te = new TextEncoder();
const T = new Date("2022-02-02T00:00:00Z");

function h(name: string, type: TarHeader["type"], extra: Partial<TarHeader> = {}): TarHeader {
  return { name, type, mode: 0o755, uid: 0, gid: 0, size: 0, mtime: T, ...extra };
}

function file(name: string, text: string): TarOut {
  const body = te.encode(text);
  return {
    header: h(name, "file", { mode: 0o644, size: body.length }),
    data: (async function* () {
      yield body;
    })(),
  };
}

async function tarOf(entries: TarOut[]): Promise<Uint8Array> {
  async function* gen() {
    yield* entries;
  }
  return new Uint8Array(await new Response(packTar(gen())).arrayBuffer());
}

/** One raw ustar header block, for what packTar will not write (sparse, a size with no data). */
function rawHeader(name: string, typeflag: string, size: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(512);
  const put = (off: number, text: string) => b.set(te.encode(text), off);
  put(0, name);
  put(100, "0000644\0");
  put(108, "0000000\0");
  put(116, "0000000\0");
  put(124, size.toString(8).padStart(11, "0") + "\0");
  put(136, "00000000000\0");
  put(148, "        ");
  put(156, typeflag);
  put(257, "ustar\x0000");
  let sum = 0;
  for (const x of b) sum += x;
  put(148, sum.toString(8).padStart(6, "0") + "\0 ");
  return b;
}

interface Dirs {
  tmp: string;
  root: string;
  canary: string;
}

/** A temp dir holding `root` and, beside it, `canary/keep`; checks the canary after `fn`. */
async function withCanary(fn: (d: Dirs) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "berth-hostile-" });
  const d = { tmp, root: `${tmp}/root`, canary: `${tmp}/canary` };
  try {
    await Deno.mkdir(d.root);
    await Deno.mkdir(d.canary);
    await Deno.writeTextFile(`${d.canary}/keep`, "keep");
    await fn(d);
    assert.deepEqual(listTree(d.canary), ["keep"], "nothing written into the canary");
    assert.deepEqual(listTree(tmp).filter((n) => !n.startsWith("root")), ["canary", "canary/keep"]);
    const keep = await Deno.lstat(`${d.canary}/keep`);
    assert.equal(keep.nlink, 1, "no hard link made to the canary");
    assert.equal(keep.mode! & 0o7777, 0o644, "the canary's mode is unchanged");
    assert.equal(await Deno.readTextFile(`${d.canary}/keep`), "keep");
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
}

const apply = (root: string, bytes: Uint8Array, whiteouts: "overlay" | "delete" = "delete") =>
  applyLayer(root, new Blob([bytes as Uint8Array<ArrayBuffer>]).stream(), { whiteouts });

/** Asserts `p` rejects with `code` and a message naming `entry`. */
async function rejectsNaming(p: Promise<unknown>, code: Code, entry: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof BerthError, `expected a BerthError, got ${e}`);
    assert.equal(Code[e.code], Code[code], e.message);
    assert.ok(e.message.includes(JSON.stringify(entry)), `the error names ${entry}: ${e.message}`);
    return true;
  });
}

Deno.test("hostile layers: `..`, absolute paths, links and whiteouts aimed outside stay inside or fail naming the entry", async () => {
  // `..` climbing out.
  await withCanary(async ({ root }) => {
    await rejectsNaming(
      apply(root, await tarOf([file("../canary/keep", "x")])),
      Code.InvalidArgument,
      "../canary/keep",
    );
    await rejectsNaming(
      apply(root, await tarOf([file("a/../../x", "x")])),
      Code.InvalidArgument,
      "a/../../x",
    );
  });
  // Absolute paths are the root's.
  await withCanary(async ({ root, canary }) => {
    await apply(root, await tarOf([file(`${canary}/keep`, "pwned"), file("/abs", "y")]));
    assert.equal(await Deno.readTextFile(`${root}${canary}/keep`), "pwned");
    assert.equal(await Deno.readTextFile(`${root}/abs`), "y");
  });
  // Hard links: climbing is refused, absolute targets resolve in the root (and there is none).
  await withCanary(async ({ root, canary }) => {
    await rejectsNaming(
      apply(root, await tarOf([{ header: h("hl", "link", { linkname: "../canary/keep" }) }])),
      Code.InvalidArgument,
      "hl",
    );
    await rejectsNaming(
      apply(root, await tarOf([{ header: h("hl2", "link", { linkname: `${canary}/keep` }) }])),
      Code.NotFound,
      "hl2",
    );
    // Through a symlink in the layer pointing at the canary: still the root's path.
    await rejectsNaming(
      apply(
        root,
        await tarOf([
          { header: h("s", "symlink", { linkname: canary }) },
          { header: h("hl3", "link", { linkname: "s/keep" }) },
        ]),
      ),
      Code.NotFound,
      "hl3",
    );
  });
  // A symlinked parent directory, absolute or climbing: files land inside.
  await withCanary(async ({ root, canary }) => {
    await apply(
      root,
      await tarOf([
        { header: h("p", "symlink", { linkname: canary }) },
        file("p/evil", "1"),
        { header: h("q", "symlink", { linkname: "../../../../../../.." + canary }) },
        file("q/evil2", "2"),
        { header: h("r", "directory") },
        { header: h("r/s", "symlink", { linkname: "../../.." }) },
        file("r/s/evil3", "3"),
      ]),
    );
    assert.equal(await Deno.readTextFile(`${root}${canary}/evil`), "1");
    assert.equal(await Deno.readTextFile(`${root}${canary}/evil2`), "2");
    assert.equal(await Deno.readTextFile(`${root}/evil3`), "3");
    // The symlinks themselves are kept as written (they resolve in the container).
    assert.equal(await Deno.readLink(`${root}/p`), canary);
  });
  // Whiteouts of `..` and `.`, in both modes.
  for (const mode of ["delete", "overlay"] as const) {
    await withCanary(async ({ root }) => {
      await rejectsNaming(
        apply(root, await tarOf([file("a/.wh...", "")]), mode),
        Code.InvalidArgument,
        "a/.wh...",
      );
      await rejectsNaming(
        apply(root, await tarOf([file(".wh..", "")]), mode),
        Code.InvalidArgument,
        ".wh..",
      );
    });
  }
  // A whiteout under a symlink to the canary removes only the root's copy (there is none).
  await withCanary(async ({ root, canary }) => {
    await apply(
      root,
      await tarOf([{ header: h("w", "symlink", { linkname: canary }) }, file("w/.wh.keep", "")]),
    );
    assert.equal(await Deno.lstat(`${root}${canary}/keep`).then(() => true, () => false), false);
  });
});

Deno.test("hostile layers: device nodes are made inside the root only", async () => {
  await withCanary(async ({ root, canary }) => {
    await apply(
      root,
      await tarOf([
        { header: h("null", "character-device", { devmajor: 1, devminor: 3, mode: 0o666 }) },
        { header: h(`${canary}/disk`, "block-device", { devmajor: 7, devminor: 0, mode: 0o600 }) },
        { header: h("p", "symlink", { linkname: canary }) },
        { header: h("p/fifo", "fifo", { mode: 0o600 }) },
      ]),
    );
    const nul = await Deno.lstat(`${root}/null`);
    assert.ok(nul.isCharDevice);
    assert.equal(nul.rdev, (1 << 8) | 3);
    assert.ok((await Deno.lstat(`${root}${canary}/disk`)).isBlockDevice);
    assert.ok((await Deno.lstat(`${root}${canary}/fifo`)).isFifo);
  });
});

Deno.test("hostile layers: a huge declared size, a GNU sparse entry and a truncated stream fail fast, naming the entry", async () => {
  await withCanary(async ({ root }) => {
    // 8 GiB declared, 1 MiB given: the stream ends inside the entry.
    const huge = concat(rawHeader("huge", "0", 0o77777777777), new Uint8Array(1 << 20));
    await rejectsNaming(apply(root, huge), Code.InvalidArgument, "huge");
    // A GNU sparse entry (type S) is not a type berth writes; it must not crash or leave the root.
    const sparse = concat(rawHeader("sparse", "S", 0), new Uint8Array(1024));
    await apply(root, sparse).catch((e) => {
      assert.ok(e instanceof BerthError, String(e));
      assert.ok(e.message.includes('"sparse"'), e.message);
    });
    // A header cut in the middle.
    const cut = (await tarOf([file("one", "1"), file("two", "2")])).slice(0, 512 + 512 + 100);
    await rejectsNaming(apply(root, cut), Code.InvalidArgument, "one");
  });
});

/** A gzip stream of a tar holding one file of `size` zero bytes: tiny, inflating to `size`. */
async function gzipBomb(size: number): Promise<Uint8Array> {
  let left = size;
  const zeros = new Uint8Array(1 << 20);
  const source = new ReadableStream<BufferSource>({
    start(c) {
      c.enqueue(rawHeader("bomb", "0", size));
    },
    pull(c) {
      if (left <= 0) {
        c.enqueue(new Uint8Array(1024));
        c.close();
        return;
      }
      const n = Math.min(left, zeros.length);
      left -= n;
      c.enqueue(zeros.subarray(0, n));
    },
  });
  const gz = source.pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(gz).arrayBuffer());
}

Deno.test("hostile layers: a gzip bomb streams through in bounded memory", async () => {
  const size = (STRESS ? 2048 : 256) * 2 ** 20;
  const gz = await gzipBomb(size);
  await withCanary(async ({ root }) => {
    const before = Deno.memoryUsage().rss;
    const r = await apply(root, gz);
    const grew = Deno.memoryUsage().rss - before;
    assert.equal(r.size, 512 + size + 1024);
    assert.equal((await Deno.stat(`${root}/bomb`)).size, size);
    console.log(
      `hostile layers: gzip bomb of ${gz.length} bytes inflated to ${size} bytes and applied, RSS grew ${
        (grew / 1048576).toFixed(1)
      } MiB`,
    );
    assert.ok(grew < 128 << 20, `RSS grew ${grew} bytes for a streamed layer`);
  });
});

Deno.test("hostile layers: a tar of very many entries applies in bounded memory", async () => {
  const count = STRESS ? 1_000_000 : 2_000;
  async function* entries(): AsyncGenerator<TarOut> {
    for (let d = 0; d < 100; d++) yield { header: h(`d${d}`, "directory") };
    for (let i = 0; i < count; i++) {
      yield { header: h(`d${i % 100}/f${i}`, "file", { mode: 0o644, size: 0 }) };
    }
  }
  await withCanary(async ({ root }) => {
    const before = Deno.memoryUsage().rss;
    const started = Date.now();
    await applyLayer(root, packTar(entries()));
    let n = 0;
    for (const d of Deno.readDirSync(root)) {
      for (const _ of Deno.readDirSync(`${root}/${d.name}`)) n++;
    }
    assert.equal(n, count);
    const grew = Deno.memoryUsage().rss - before;
    console.log(
      `hostile layers: ${count} entries applied in ${Date.now() - started} ms, RSS grew ${
        (grew / 1048576).toFixed(1)
      } MiB`,
    );
    assert.ok(grew < 256 << 20, `RSS grew ${grew} bytes`);
  });
});
