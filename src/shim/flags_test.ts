import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { formatShimFlags, parseShimFlags } from "./flags.ts";

const env = (vars: Record<string, string>) => (name: string) => vars[name];

Deno.test("flags: containerd's start call", () => {
  const f = parseShimFlags(
    [
      "-namespace",
      "default",
      "-address",
      "/run/containerd/containerd.sock",
      "-publish-binary",
      "/usr/bin/containerd",
      "-id",
      "c1",
      "-debug",
      "start",
    ],
    env({ TTRPC_ADDRESS: "/run/containerd/containerd.sock.ttrpc" }),
  );
  assert.equal(f.namespace, "default");
  assert.equal(f.address, "/run/containerd/containerd.sock");
  assert.equal(f.publishBinary, "/usr/bin/containerd");
  assert.equal(f.id, "c1");
  assert.equal(f.debug, true);
  assert.equal(f.action, "start");
  assert.equal(f.ttrpcAddress, "/run/containerd/containerd.sock.ttrpc");
});

Deno.test("flags: -name=value, --name, defaults, delete with -bundle", () => {
  const f = parseShimFlags(["--namespace=ns", "-id=x", "-bundle", "/b", "delete"], env({}));
  assert.equal(f.namespace, "ns");
  assert.equal(f.id, "x");
  assert.equal(f.bundle, "/b");
  assert.equal(f.publishBinary, "containerd");
  assert.equal(f.action, "delete");
  assert.equal(f.ttrpcAddress, "");
});

Deno.test("flags: unknown flag and missing value are InvalidArgument", () => {
  assert.throws(
    () => parseShimFlags(["-bogus", "1", "start"], env({})),
    (e) => isCode(e, Code.InvalidArgument),
  );
  assert.throws(() => parseShimFlags(["-id"], env({})), (e) => isCode(e, Code.InvalidArgument));
});

Deno.test("flags: format round-trips", () => {
  const f = parseShimFlags([
    "-namespace",
    "n",
    "-address",
    "/a",
    "-id",
    "i",
    "-socket",
    "/s",
    "-debug",
    "serve",
  ], env({}));
  const again = parseShimFlags([...formatShimFlags(f), "serve"], env({}));
  assert.deepEqual({ ...again, ttrpcAddress: "" }, { ...f, ttrpcAddress: "" });
});
