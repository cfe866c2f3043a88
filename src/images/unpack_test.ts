import assert from "node:assert/strict";
import { entryName } from "./import.ts";

Deno.test("images: archive entry names", () => {
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
