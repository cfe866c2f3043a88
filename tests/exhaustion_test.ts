/**
 * Resource exhaustion, small form: the daemon's root on a tmpfs too small
 * for an image. The import fails with a clear out-of-space error, the
 * daemon keeps serving, the store holds no half-imported image, and once
 * there is room again the same import succeeds.
 */
import assert from "node:assert/strict";
import { run, runChecked } from "../src/spawn/mod.ts";
import { type DaemonProc, startDaemonIn, stopDaemon } from "./support/daemon.ts";
import { buildLargeImage } from "./support/image.ts";
import { mountsUnder, unmountAllUnder } from "./support/mounts.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;

Deno.test("exhaustion: an import into a full root fails ResourceExhausted, the store stays consistent, and succeeds once there is room", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-full-" });
  const root = `${tmp}/root`;
  await Deno.mkdir(root);
  await Deno.mkdir(`${tmp}/img`);
  await runChecked("mount", ["-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", root]);
  let daemon: DaemonProc | undefined;
  try {
    // ~40 MiB of incompressible layers: the blobs alone do not fit in 24 MiB.
    const img = await buildLargeImage(`${tmp}/img`, 40, 2);
    const started = await startDaemonIn(tmp, root);
    daemon = started.daemon;
    const address = started.address;
    const berth = async (...args: string[]) => {
      const r = await run(Deno.execPath(), ["run", "-A", "--quiet", MOD, "-a", address, ...args]);
      const dec = new TextDecoder();
      return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
    };

    const full = await berth("images", "import", img.archive);
    assert.notEqual(full.code, 0, `the import into a full root must fail:\n${full.out}`);
    assert.match(full.out, /no space|ResourceExhausted|resource exhausted/i, full.out);
    // Still serving; no image recorded from the failed import.
    const ls = await berth("images", "ls", "-q");
    assert.equal(ls.code, 0, ls.out);
    assert.ok(!ls.out.includes(img.ref), `a half-imported image is listed:\n${ls.out}`);

    // Room again: the same import goes through.
    await runChecked("mount", ["-o", "remount,size=256m", root]);
    const again = await berth("images", "import", img.archive);
    assert.equal(again.code, 0, `the import after space came back:\n${again.out}`);
    const ls2 = await berth("images", "ls", "-q");
    assert.ok(ls2.out.includes(img.ref), ls2.out);
    const check = await berth("images", "check");
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /complete/, check.out);
  } finally {
    if (daemon !== undefined) {
      const status = await stopDaemon(daemon);
      assert.equal(status.code, 0, daemon.log().slice(-3000));
    }
    unmountAllUnder(root);
    await run("umount", [root]);
    assert.deepEqual(mountsUnder(tmp), []);
    await Deno.remove(tmp, { recursive: true });
  }
});
