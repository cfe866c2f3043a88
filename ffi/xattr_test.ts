import assert from "node:assert/strict";
import { lgetxattr, llistxattr, lremovexattr, lsetxattr, XattrFlags } from "./xattr.ts";

const te = new TextEncoder();

async function withDir(fn: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-ffi-xattr-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("xattrs are set, read, listed and removed; a missing one reads as null", () =>
  withDir(async (dir) => {
    const f = `${dir}/f`;
    await Deno.writeTextFile(f, "x");
    assert.deepEqual(llistxattr(f), []);
    assert.equal(lgetxattr(f, "user.a"), null);

    lsetxattr(f, "user.a", te.encode("one"));
    const big = new Uint8Array(3000).map((_, i) => i % 251);
    lsetxattr(f, "user.big", big);
    lsetxattr(f, "user.empty", new Uint8Array(0));
    assert.deepEqual(lgetxattr(f, "user.a"), te.encode("one"));
    assert.deepEqual(lgetxattr(f, "user.big"), big);
    assert.deepEqual(lgetxattr(f, "user.empty"), new Uint8Array(0));
    assert.deepEqual(llistxattr(f).sort(), ["user.a", "user.big", "user.empty"]);

    // A view into a larger buffer writes only the viewed bytes.
    lsetxattr(f, "user.a", te.encode("xxtwoxx").subarray(2, 5));
    assert.deepEqual(lgetxattr(f, "user.a"), te.encode("two"));

    lremovexattr(f, "user.a");
    assert.equal(lgetxattr(f, "user.a"), null);
    assert.deepEqual(llistxattr(f).sort(), ["user.big", "user.empty"]);
    assert.throws(() => lremovexattr(f, "user.a"), { call: "lremovexattr", code: "ENODATA" });
  }));

Deno.test("lsetxattr's CREATE and REPLACE flags; bad input is EINVAL", () =>
  withDir(async (dir) => {
    const f = `${dir}/f`;
    await Deno.writeTextFile(f, "x");
    assert.throws(() => lsetxattr(f, "user.a", te.encode("1"), XattrFlags.REPLACE), {
      code: "ENODATA",
    });
    lsetxattr(f, "user.a", te.encode("1"), XattrFlags.CREATE);
    assert.throws(() => lsetxattr(f, "user.a", te.encode("2"), XattrFlags.CREATE), {
      message: `lsetxattr(${f}, user.a): EEXIST (File exists)`,
    });
    lsetxattr(f, "user.a", te.encode("2"), XattrFlags.REPLACE);
    assert.deepEqual(lgetxattr(f, "user.a"), te.encode("2"));

    assert.throws(() => lsetxattr(f, "user.a", te.encode("3"), 7), { code: "EINVAL" });
    assert.throws(() => lsetxattr(f, "", te.encode("3")), { code: "EINVAL" });
    assert.throws(() => lgetxattr(f, "user.\0"), { code: "EINVAL" });
    // No such namespace as "bogus.": the kernel says EOPNOTSUPP.
    assert.throws(() => lsetxattr(f, "bogus.a", te.encode("3")), { code: "EOPNOTSUPP" });
  }));

Deno.test("the l*xattr calls act on a symlink itself, not its target", () =>
  withDir(async (dir) => {
    const target = `${dir}/target`, link = `${dir}/link`;
    await Deno.writeTextFile(target, "x");
    await Deno.symlink("target", link);
    // user.* is refused on symlinks by the kernel; trusted.* (root) is not.
    lsetxattr(link, "trusted.overlay.opaque", te.encode("y"));
    assert.deepEqual(lgetxattr(link, "trusted.overlay.opaque"), te.encode("y"));
    assert.ok(llistxattr(link).includes("trusted.overlay.opaque"));
    assert.equal(lgetxattr(target, "trusted.overlay.opaque"), null);
    assert.ok(!llistxattr(target).includes("trusted.overlay.opaque"));
    assert.throws(() => lsetxattr(link, "user.a", te.encode("1")), { code: "EPERM" });
    lremovexattr(link, "trusted.overlay.opaque");
    assert.equal(lgetxattr(link, "trusted.overlay.opaque"), null);
  }));

Deno.test("xattr calls on a missing path throw ENOENT naming the path", () =>
  withDir((dir) => {
    const p = `${dir}/missing`;
    assert.throws(() => llistxattr(p), {
      message: `llistxattr(${p}): ENOENT (No such file or directory)`,
    });
    assert.throws(() => lgetxattr(p, "user.a"), { call: "lgetxattr", code: "ENOENT" });
    assert.throws(() => lsetxattr(p, "user.a", new Uint8Array(1)), { code: "ENOENT" });
    assert.throws(() => lremovexattr(p, "user.a"), { code: "ENOENT" });
  }));
