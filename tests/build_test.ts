/**
 * The built executable (bin/berth, a compiled binary or a bundle with a deno
 * shebang) and a source run (`deno run mod.ts`) must behave the same.
 * `make test` builds first; this test fails if bin/berth is missing.
 */
import assert from "node:assert/strict";
import { run, RUNTIME_FLAGS } from "../src/spawn/mod.ts";
import { VERSION } from "../src/version.ts";

const root = new URL("..", import.meta.url).pathname;
const text = (b: Uint8Array) => new TextDecoder().decode(b);

async function source(args: string[]) {
  return await run(Deno.execPath(), ["run", "-A", "--quiet", `${root}mod.ts`, ...args]);
}

Deno.test("build: bin/berth and deno run mod.ts print the same version and help", async () => {
  for (const args of [["--version"], ["--help"]]) {
    const built = await run(`${root}bin/berth`, args);
    const src = await source(args);
    assert.equal(built.code, 0, text(built.stderr));
    assert.equal(text(built.stdout), text(src.stdout));
  }
  assert.equal(text((await run(`${root}bin/berth`, ["--version"])).stdout), `berth ${VERSION}\n`);
});

Deno.test("build: the containerd-shim-berth-v2 alias runs the same program in shim mode", async () => {
  const info = await Deno.lstat(`${root}bin/containerd-shim-berth-v2`);
  assert.ok(info.isSymlink || info.isFile);
  // A shim call without a namespace is refused by the shim, not taken for a client command.
  const r = await run(`${root}bin/containerd-shim-berth-v2`, ["-id", "x", "start"]);
  assert.notEqual(r.code, 0);
  assert.doesNotMatch(text(r.stderr), /unknown command/);
});

Deno.test("build: a bundle's shebang runs deno with RUNTIME_FLAGS, read from src/spawn/flags.ts", async () => {
  const head = new Uint8Array(512);
  const f = await Deno.open(`${root}bin/berth`);
  const n = (await f.read(head)) ?? 0;
  f.close();
  const first = text(head.subarray(0, n)).split("\n")[0];
  if (!first.startsWith("#!")) return; // a compiled binary: the flags are compiled in
  assert.ok(first.includes(` run ${RUNTIME_FLAGS.join(" ")} `), first);
});
