import assert from "node:assert/strict";
import { parseConfig, registryConfig } from "../../config/mod.ts";
import { Code, isCode } from "../../errdefs/mod.ts";
import {
  credentialsFor,
  endpointOptions,
  imageUser,
  isLocalhost,
  normalizeRef,
  registryEndpoints,
  splitReferences,
} from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);

Deno.test("cri images: references normalize as the kubelet's (tag dropped beside a digest)", () => {
  const d = "sha256:" + "ab".repeat(32);
  assert.deepEqual(normalizeRef("busybox"), {
    name: "docker.io/library/busybox:latest",
    repo: "docker.io/library/busybox",
    tagged: true,
  });
  assert.equal(normalizeRef("registry.k8s.io/pause:3.9").name, "registry.k8s.io/pause:3.9");
  assert.equal(normalizeRef(`quay.io/a/b:1@${d}`).name, `quay.io/a/b@${d}`);
  assert.equal(normalizeRef(`quay.io/a/b:1@${d}`).tagged, false);
  for (const bad of ["", "UPPER/case", "a:b:c", "x@sha256:12"]) {
    assert.throws(() => normalizeRef(bad), code(Code.InvalidArgument), bad);
  }
});

Deno.test("cri images: repo tags and digests from record names; the user from the config", () => {
  const d = "sha256:" + "cd".repeat(32);
  assert.deepEqual(
    splitReferences([d, "docker.io/library/busybox:1", `docker.io/library/busybox@${d}`, "x/y"]),
    { repoTags: ["docker.io/library/busybox:1"], repoDigests: [`docker.io/library/busybox@${d}`] },
  );
  assert.deepEqual(imageUser(undefined), { username: "" });
  assert.deepEqual(imageUser("1000:1000"), { uid: 1000n, username: "" });
  assert.deepEqual(imageUser("0"), { uid: 0n, username: "" });
  assert.deepEqual(imageUser("nobody:nogroup"), { username: "nobody" });
});

Deno.test("cri images: registry endpoints are mirrors in order, then the host (containerd's rules)", () => {
  const cfg = {
    mirrors: {
      "registry.k8s.io": { endpoint: ["http://10.0.0.1:5000", "mirror.example.com/v2/k8s"] },
      "127.0.0.1:5000": { endpoint: ["127.0.0.1:5000"] },
      "*": { endpoint: ["https://any.example.com"] },
    },
    configs: {},
  };
  assert.deepEqual(registryEndpoints(cfg, "registry.k8s.io"), [
    "http://10.0.0.1:5000/v2",
    "https://mirror.example.com/v2/k8s",
    "https://registry.k8s.io/v2",
  ]);
  // A mirror that is the host itself is not repeated; loopback defaults to plain HTTP.
  assert.deepEqual(registryEndpoints(cfg, "127.0.0.1:5000"), ["http://127.0.0.1:5000/v2"]);
  assert.deepEqual(registryEndpoints(cfg, "docker.io"), [
    "https://any.example.com/v2",
    "https://registry-1.docker.io/v2",
  ]);
  assert.deepEqual(registryEndpoints({ mirrors: {}, configs: {} }, "localhost:1234"), [
    "http://localhost:1234/v2",
  ]);
  assert.throws(
    () => registryEndpoints({ mirrors: { h: { endpoint: ["ftp://x"] } }, configs: {} }, "h"),
    code(Code.InvalidArgument),
  );
  for (const h of ["localhost", "127.0.0.1:80", "[::1]:5000", "::1", "127.3.4.5"]) {
    assert.ok(isLocalhost(h), h);
  }
  for (const h of ["10.0.0.1", "example.com:5000", "localhost.example.com"]) {
    assert.ok(!isLocalhost(h), h);
  }
});

Deno.test("cri images: credentials from an AuthConfig, for the server it names only", () => {
  assert.deepEqual(credentialsFor({ username: "u", password: "p" }, "h:1"), {
    username: "u",
    password: "p",
  });
  assert.deepEqual(credentialsFor({ auth: btoa("u:p:q\0") }, "h"), {
    username: "u",
    password: "p:q",
  });
  assert.deepEqual(credentialsFor({ identityToken: "idt" }, "h"), { identityToken: "idt" });
  assert.deepEqual(credentialsFor({ registryToken: "rt" }, "h"), { registryToken: "rt" });
  assert.deepEqual(credentialsFor({ username: "u", serverAddress: "https://other" }, "h"), {});
  assert.deepEqual(credentialsFor({ username: "u", serverAddress: "h:1" }, "h:1"), {
    username: "u",
    password: "",
  });
  assert.deepEqual(credentialsFor(undefined, "h"), {});
  assert.throws(() => credentialsFor({ auth: "!!" }, "h"), code(Code.InvalidArgument));
  assert.throws(() => credentialsFor({ auth: btoa("nocolon") }, "h"), code(Code.InvalidArgument));
});

Deno.test("cri images: per-host TLS and auth from the config; skip-verify is refused by name", async () => {
  const { config, warnings } = parseConfig(`
version = 2
[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "/etc/containerd/certs.d"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]
  endpoint = ["http://127.0.0.1:5000"]
[plugins."io.containerd.grpc.v1.cri".registry.configs."secure.example.com".tls]
  insecure_skip_verify = true
[plugins."io.containerd.grpc.v1.cri".registry.configs."ca.example.com".tls]
  ca_file = "/nonexistent/ca.pem"
[plugins."io.containerd.grpc.v1.cri".registry.configs."127.0.0.1:5000".auth]
  username = "cfg-user"
  password = "cfg-pw"
`);
  assert.ok(
    warnings.some((w) => w.includes("config_path") && w.includes("hosts.toml")),
    warnings.join("\n"),
  );
  const reg = registryConfig(config);
  assert.deepEqual(reg.mirrors["docker.io"].endpoint, ["http://127.0.0.1:5000"]);
  assert.equal(reg.configs["secure.example.com"].tls?.ca_file, "");

  const local = await endpointOptions(reg, "http://127.0.0.1:5000/v2", undefined);
  assert.deepEqual(local.options, {
    endpoint: "http://127.0.0.1:5000/v2",
    username: "cfg-user",
    password: "cfg-pw",
  });
  // The request's own credentials win over the config's.
  const own = await endpointOptions(reg, "http://127.0.0.1:5000/v2", { registryToken: "t" });
  assert.equal(own.options.registryToken, "t");
  assert.equal(own.options.username, undefined);
  await assert.rejects(
    endpointOptions(reg, "https://secure.example.com/v2", undefined),
    (e) => isCode(e, Code.Unimplemented) && /insecure_skip_verify/.test((e as Error).message),
  );
  // Plain HTTP to the same host needs no TLS, so the setting does not matter there.
  assert.equal(
    (await endpointOptions(reg, "http://secure.example.com/v2", undefined)).client,
    undefined,
  );
  await assert.rejects(
    endpointOptions(reg, "https://ca.example.com/v2", undefined),
    (e) => isCode(e, Code.InvalidArgument) && /ca_file/.test((e as Error).message),
  );
  assert.throws(
    () =>
      parseConfig(`
[plugins."io.containerd.grpc.v1.cri".registry.configs."h".tls]
  cert_file = "/c.pem"
`),
    (e) => isCode(e, Code.InvalidArgument) && /key_file/.test((e as Error).message),
  );
  assert.throws(
    () =>
      parseConfig(`
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."h"]
  endpoint = "http://x"
`),
    code(Code.InvalidArgument),
  );
});
