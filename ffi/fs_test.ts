import assert from "node:assert/strict";
import { mkfifo } from "./fs.ts";

Deno.test("mkfifo makes a fifo with the given mode, and EEXIST the second time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
  try {
    const path = `${dir}/stdout`;
    mkfifo(path, 0o600);
    const info = await Deno.lstat(path);
    assert.equal(info.isFifo, true);
    assert.equal(info.mode! & 0o777, 0o600);
    assert.throws(() => mkfifo(path), {
      call: "mkfifo",
      code: "EEXIST",
      message: `mkfifo(${path}): EEXIST (File exists)`,
    });
    assert.throws(() => mkfifo(`${dir}/missing/x`), { code: "ENOENT" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
