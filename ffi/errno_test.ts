import assert from "node:assert/strict";
import { run } from "../src/spawn/mod.ts";
import { errnoDescription, errnoName, isErrno, SyscallError } from "./errno.ts";

Deno.test("errno numbers map to their names and descriptions", () => {
  assert.equal(errnoName(1), "EPERM");
  assert.equal(errnoName(3), "ESRCH");
  assert.equal(errnoName(11), "EAGAIN");
  assert.equal(errnoName(95), "EOPNOTSUPP");
  assert.equal(errnoName(133), "EHWPOISON");
  assert.equal(errnoDescription(2), "No such file or directory");
  assert.equal(errnoName(41), "E41");
  assert.equal(errnoName(9999), "E9999");
  assert.equal(errnoDescription(9999), "Unknown error 9999");
});

Deno.test("a SyscallError names the call, its arguments and the errno", () => {
  const err = new SyscallError("pidfd_open", 3, "1234");
  assert.ok(err instanceof Error);
  assert.equal(err.name, "SyscallError");
  assert.equal(err.message, "pidfd_open(1234): ESRCH (No such process)");
  assert.equal(err.call, "pidfd_open");
  assert.equal(err.errno, 3);
  assert.equal(err.code, "ESRCH");
  assert.equal(isErrno(err, "ESRCH"), true);
  assert.equal(isErrno(err, "EIO"), false);
  assert.equal(isErrno(new Error("ESRCH"), "ESRCH"), false);
});

Deno.test("importing ffi opens nothing: libc is opened by the first call", async () => {
  // Run without FFI permission: an import that called dlopen would fail at
  // once; the first call must fail instead. With it, the call works.
  const script = `
    const ffi = await import(${JSON.stringify(new URL("./mod.ts", import.meta.url).href)});
    console.log("imported");
    try { ffi.getChildSubreaper(); console.log("opened"); } catch (e) { console.log(e.name); }`;
  const runScript = async (permission: string) => {
    const r = await run(Deno.execPath(), [
      "run",
      "--no-config",
      "--quiet",
      "--no-prompt",
      "--allow-read",
      permission,
      "-",
    ], {
      input: new TextEncoder().encode(script),
    });
    assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
    return new TextDecoder().decode(r.stdout);
  };
  assert.equal(await runScript("--deny-ffi"), "imported\nNotCapable\n");
  assert.equal(await runScript("--allow-ffi"), "imported\nopened\n");
});
