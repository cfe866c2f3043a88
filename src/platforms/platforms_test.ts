import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  chainId,
  chainIds,
  DEFAULT_PLATFORM,
  formatPlatform,
  hostPlatform,
  manifestsFor,
  matchPlatform,
  OCI_INDEX,
  OCI_MANIFEST,
  parsePlatform,
} from "./mod.ts";

Deno.test("platforms: chain ids hash '<parent chain> <diff id>' from the second layer on", async () => {
  const a = "sha256:" + "1".repeat(64);
  const b = "sha256:" + "2".repeat(64);
  const ids = await chainIds([a, b]);
  assert.equal(ids[0], a);
  assert.equal(ids[1], "sha256:" + createHash("sha256").update(`${a} ${b}`).digest("hex"));
  assert.deepEqual(await chainIds([]), []);
  assert.equal(await chainId([a, b]), ids[1]);
  assert.equal(await chainId([]), "");
});

Deno.test("platforms: the default is the host's, in OCI's words", () => {
  assert.deepEqual(DEFAULT_PLATFORM, hostPlatform());
  assert.equal(DEFAULT_PLATFORM.os, Deno.build.os);
  const want = { x86_64: "amd64", aarch64: "arm64" }[Deno.build.arch as string];
  assert.equal(DEFAULT_PLATFORM.architecture, want ?? Deno.build.arch);
});

Deno.test("platforms: matching, parsing and formatting", () => {
  const amd64 = { os: "linux", architecture: "amd64" };
  const arm64 = { os: "linux", architecture: "arm64", variant: "v8" };
  assert.ok(matchPlatform(amd64, amd64));
  assert.ok(matchPlatform(undefined, amd64), "no platform: matches");
  assert.ok(matchPlatform({ architecture: "amd64" }, amd64), "no os: linux");
  assert.ok(!matchPlatform(arm64, amd64));
  assert.ok(!matchPlatform({ os: "windows", architecture: "amd64" }, amd64));
  assert.ok(matchPlatform({ os: "linux", architecture: "arm64" }, arm64), "one variant: matches");
  assert.ok(!matchPlatform({ ...arm64, variant: "v7" }, arm64));
  assert.deepEqual(parsePlatform("linux/arm64/v8"), arm64);
  assert.throws(() => parsePlatform("linux"), /want os\/arch/);
  assert.equal(formatPlatform(arm64), "linux/arm64/v8");
  assert.equal(formatPlatform({}), "unknown/unknown");
});

Deno.test("platforms: an index's manifests for a platform, in order", () => {
  const m = (digest: string, architecture?: string, mediaType = OCI_MANIFEST) => ({
    mediaType,
    digest,
    ...(architecture ? { platform: { os: "linux", architecture } } : {}),
  });
  const entries = [
    m("a", "arm64"),
    m("b", "amd64"),
    m("c"),
    m("d", "amd64", "application/vnd.in-toto+json"),
    m("e", "amd64", OCI_INDEX),
  ];
  const picked = manifestsFor(entries, { os: "linux", architecture: "amd64" });
  assert.deepEqual(picked.map((e) => e.digest), ["b", "c", "e"]);
});
