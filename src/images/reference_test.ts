import assert from "node:assert/strict";
import { familiarName, normalizeName, parseReference } from "./reference.ts";

Deno.test("reference: names normalize as docker's and containerd's do", () => {
  assert.equal(normalizeName("busybox"), "docker.io/library/busybox:latest");
  assert.equal(normalizeName("127.0.0.1:5000/busybox:t"), "127.0.0.1:5000/busybox:t");
  assert.equal(familiarName("docker.io/library/busybox:latest"), "busybox:latest");
  assert.equal(familiarName("example.com/a/b:1"), "example.com/a/b:1");
  const d = "sha256:" + "a".repeat(64);
  assert.deepEqual(parseReference(`localhost/x/y@${d}`), {
    host: "localhost",
    repository: "x/y",
    tag: undefined,
    digest: d,
  });
  assert.throws(() => parseReference("Upper/Case"), /invalid reference/);
  assert.throws(() => parseReference("a@sha256:12"), /malformed digest/);
});
