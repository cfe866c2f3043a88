import assert from "node:assert/strict";
import { parseMountOptions } from "./mod.ts";

Deno.test("rootfs: mount options split into flags and data", () => {
  assert.deepEqual(parseMountOptions(["ro", "nosuid", "nodev", "lowerdir=/a:/b", "upperdir=/u"]), {
    flags: 0x1 | 0x2 | 0x4,
    data: "lowerdir=/a:/b,upperdir=/u",
  });
  assert.deepEqual(parseMountOptions(["rbind", "rw"]), { flags: 0x1000 | 0x4000, data: "" });
  assert.deepEqual(parseMountOptions(["ro", "rw"]), { flags: 0, data: "" });
  assert.deepEqual(parseMountOptions(["defaults", "index=off"]), { flags: 0, data: "index=off" });
});
