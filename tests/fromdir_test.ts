/**
 * `images import --from-dir` is reproducible: the same tree gives the same
 * layer and image digests (in one daemon, in another, from another path);
 * a changed file, or SOURCE_DATE_EPOCH, gives others.
 *
 * Needs `make build` first (bin/berth).
 */
import assert from "node:assert/strict";
import { makeRootDir, privateCopy, startDaemon } from "./support/berth.ts";
import { runTool, type ToolResult } from "./support/tool.ts";

const BERTH = (await privateCopy()).path;

function ok(r: ToolResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** The image digest `images import --from-dir` printed. */
function digestOf(out: string): string {
  const m = out.match(/ (sha256:[0-9a-f]{64})/);
  assert.ok(m, `no digest in ${JSON.stringify(out)}`);
  return m[1];
}

Deno.test("images import --from-dir: the same tree gives the same digests", async () => {
  const a = await startDaemon(BERTH);
  const b = await startDaemon(BERTH);
  const src = await Deno.makeTempDir({ prefix: "berth-fromdir-src-" });
  try {
    const root = await makeRootDir(src);
    await Deno.writeTextFile(`${root}/hello.txt`, "hello\n");
    await Deno.mkdir(`${root}/etc/b`, { recursive: true });
    await Deno.writeTextFile(`${root}/etc/b/conf`, "x=1\n");
    await Deno.chmod(`${root}/etc/b/conf`, 0o600);
    await Deno.link(`${root}/hello.txt`, `${root}/etc/hello-link`);
    const imp = (d: typeof a, dir: string, name: string, env?: Record<string, string>) =>
      d.berth(["images", "import", "--no-unpack", "--from-dir", dir, name], { env });

    const first = digestOf(ok(await imp(a, root, "repro:1"), "import 1"));
    // Different second of the clock, different daemon, different image name.
    await new Promise((r) => setTimeout(r, 1100));
    assert.equal(digestOf(ok(await imp(a, root, "repro:2"), "import 2")), first);
    assert.equal(digestOf(ok(await imp(b, root, "repro:1"), "import in another daemon")), first);
    // The same tree elsewhere (cp -a keeps owners, modes, times, links).
    const copy = `${src}/copy`;
    ok(await runTool("cp", ["-a", root, copy]), "cp -a");
    assert.equal(digestOf(ok(await imp(b, copy, "repro:copy"), "import of a copy")), first);

    // The layer and config digests agree as well (the index above covers them;
    // this names what differs when it does not).
    const blobs = (d: typeof a) =>
      d.berth(["content", "ls", "-q"]).then((r) => ok(r, "content ls").split("\n").sort());
    assert.deepEqual(await blobs(b), await blobs(a));

    // A changed file changes the image.
    await Deno.writeTextFile(`${root}/hello.txt`, "hello, again\n");
    const changed = digestOf(ok(await imp(a, root, "repro:3"), "import changed"));
    assert.notEqual(changed, first);

    // SOURCE_DATE_EPOCH sets the config's time and clamps newer mtimes:
    // twice the same, and not the default's digest.
    const epoch = { SOURCE_DATE_EPOCH: "1700000000" };
    const dated = digestOf(ok(await imp(a, root, "repro:4", epoch), "import dated"));
    assert.equal(digestOf(ok(await imp(b, root, "repro:4", epoch), "import dated b")), dated);
    assert.notEqual(dated, changed);
    const bad = await imp(a, root, "repro:5", { SOURCE_DATE_EPOCH: "yesterday" });
    assert.equal(bad.code, 2, bad.stderr);
    assert.match(bad.stderr, /SOURCE_DATE_EPOCH must be whole seconds/);
  } finally {
    await a.stop();
    await b.stop();
    await Deno.remove(src, { recursive: true });
  }
});
