import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { entryName } from "./import.ts";
import { matchPlatform } from "./platform.ts";
import { chainIds } from "./unpack.ts";

Deno.test("unpack: chain ids hash '<parent chain> <diff id>' from the second layer on", () => {
  const a = "sha256:" + "1".repeat(64);
  const b = "sha256:" + "2".repeat(64);
  const ids = chainIds([a, b]);
  assert.equal(ids[0], a);
  assert.equal(ids[1], "sha256:" + createHash("sha256").update(`${a} ${b}`).digest("hex"));
  assert.deepEqual(chainIds([]), []);
});

Deno.test("images: platform matching and archive entry names", () => {
  assert.ok(matchPlatform({ os: "linux", architecture: "amd64" }));
  assert.ok(matchPlatform(undefined));
  assert.ok(!matchPlatform({ os: "linux", architecture: "arm64", variant: "v8" }));
  assert.ok(!matchPlatform({ os: "windows", architecture: "amd64" }));
  assert.equal(
    entryName({ "org.opencontainers.image.ref.name": "v1" }, "example.com/app"),
    "example.com/app:v1",
  );
  assert.equal(entryName({ "org.opencontainers.image.ref.name": "v1" }), undefined);
  assert.equal(
    entryName({
      "io.containerd.image.name": "busybox:t",
      "org.opencontainers.image.ref.name": "t",
    }),
    "docker.io/library/busybox:t",
  );
});
