import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { lockRoot } from "./lock.ts";

Deno.test("lock: a second holder is refused, naming the root and the holder's pid", async () => {
  const root = await Deno.makeTempDir();
  try {
    const lock = await lockRoot(root);
    assert.equal((await Deno.readTextFile(lock.path)).trim(), String(Deno.pid));
    // Another process (the lock is per open file, so a child shows it as a second daemon would).
    const probe = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `const f = await Deno.open(${
          JSON.stringify(lock.path)
        }, {read: true, write: true}); console.log(await f.tryLock(true)); f.close();`,
      ],
      stdout: "piped",
    });
    assert.equal(new TextDecoder().decode((await probe.output()).stdout).trim(), "false");
    await assert.rejects(lockRoot(root), (e) => {
      assert.ok(isCode(e, Code.FailedPrecondition));
      assert.match(
        (e as Error).message,
        new RegExp(`root ${root} is in use by another berth daemon \\(pid ${Deno.pid}\\)`),
      );
      return true;
    });
    lock.release();
    lock.release();
    const again = await lockRoot(root);
    again.release();
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
