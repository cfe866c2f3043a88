import assert from "node:assert/strict";
import { Mount, mount, umount2, Unmount } from "./mount.ts";

/** True when `path` is a mount point in our mount table. */
function isMountPoint(path: string): boolean {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").some((line) => {
    const field = line.split(" ")[4];
    // mountinfo escapes space, tab, newline and backslash as \ooo.
    return field?.replace(/\\([0-7]{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8))) === path;
  });
}

Deno.test("a bind mount appears in mountinfo, turns read-only, and goes after umount2", async () => {
  const src = await Deno.makeTempDir({ prefix: "berth-ffi-src-" });
  const dst = await Deno.makeTempDir({ prefix: "berth-ffi-dst-" });
  let mounted = false;
  try {
    await Deno.writeTextFile(`${src}/file`, "bound");
    assert.equal(isMountPoint(dst), false);
    mount(src, dst, "", Mount.BIND);
    mounted = true;
    assert.equal(isMountPoint(dst), true);
    assert.equal(await Deno.readTextFile(`${dst}/file`), "bound");

    mount("", dst, "", Mount.BIND | Mount.REMOUNT | Mount.RDONLY);
    await assert.rejects(Deno.writeTextFile(`${dst}/new`, "x"), /Read-only file system/);

    umount2(dst);
    mounted = false;
    assert.equal(isMountPoint(dst), false);
    assert.throws(() => umount2(dst), {
      message: `umount2(${dst}, 0): EINVAL (Invalid argument)`,
    });
  } finally {
    if (mounted) umount2(dst, Unmount.DETACH);
    await Deno.remove(src, { recursive: true });
    await Deno.remove(dst, { recursive: true });
  }
});

Deno.test("mount errors name the call and errno", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
  try {
    assert.throws(() => mount(`${dir}/missing`, dir, "", Mount.BIND), {
      name: "SyscallError",
      call: "mount",
      code: "ENOENT",
    });
    assert.throws(() => mount("none", dir, "no-such-fs-type", 0), {
      message: `mount(none, ${dir}, no-such-fs-type, 0x0): ENODEV (No such device)`,
    });
    assert.throws(() => mount("", dir, "", -1), { code: "EINVAL" });
    assert.equal(isMountPoint(dir), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
