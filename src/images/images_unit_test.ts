import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { parseChallenges } from "./registry.ts";
import { familiarName, normalizeName, parseReference } from "./reference.ts";
import { matchPlatform } from "./platform.ts";
import { chainIds } from "./unpack.ts";
import { entryName } from "./import.ts";

Deno.test("registry: WWW-Authenticate challenges parse into scheme and parameters", () => {
  assert.deepEqual(
    parseChallenges(
      'Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull"',
    ),
    [{
      scheme: "bearer",
      params: {
        realm: "https://auth.example/token",
        service: "registry.example",
        scope: "repository:a/b:pull",
      },
    }],
  );
  assert.deepEqual(parseChallenges('Basic realm="Registry Realm"'), [
    { scheme: "basic", params: { realm: "Registry Realm" } },
  ]);
});

Deno.test("reference: names normalize as docker's and containerd's do", () => {
  assert.equal(normalizeName("busybox"), "docker.io/library/busybox:latest");
  assert.equal(normalizeName("127.0.0.1:5000/busybox:t"), "127.0.0.1:5000/busybox:t");
  assert.equal(familiarName("docker.io/library/busybox:latest"), "busybox:latest");
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

Deno.test("images: platform matching, chain ids and archive entry names", () => {
  assert.ok(matchPlatform({ os: "linux", architecture: "amd64" }));
  assert.ok(matchPlatform(undefined));
  assert.ok(!matchPlatform({ os: "linux", architecture: "arm64", variant: "v8" }));
  const a = "sha256:" + "1".repeat(64);
  const b = "sha256:" + "2".repeat(64);
  const ids = chainIds([a, b]);
  assert.equal(ids[0], a);
  // containerd's chain id of two layers: sha256 of "<a> <b>".
  assert.equal(ids[1], "sha256:" + createHash("sha256").update(`${a} ${b}`).digest("hex"));
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
