// The CRI ImageService over berth's local stores against real registries:
// a docker-registry reached through a mirror for a registry.k8s.io name
// (over berth's gRPC server and client), htpasswd credentials from the
// request and from the config, identity and registry tokens against a
// token service in this process, and a registry CA from the config.

import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import type { RegistryConfig } from "../src/config/mod.ts";
import { ContentStore } from "../src/content/mod.ts";
import { imageService, type ImageServiceDeps } from "../src/cri/images/mod.ts";
import { Code, isCode } from "../src/errdefs/mod.ts";
import { Exchange } from "../src/events/mod.ts";
import { GarbageCollector } from "../src/gc/mod.ts";
import {
  ImageService,
  PullImageRequestSchema,
  RemoveImageRequestSchema,
} from "../src/gen/k8s/cri/runtime/v1/api_pb.ts";
import { GrpcClient, GrpcServer } from "../src/grpc/mod.ts";
import { chainIds } from "../src/images/mod.ts";
import { type Metadata, openMetadata } from "../src/metadata/mod.ts";
import { NamespacedContent } from "../src/services/content/namespaced.ts";
import { OverlaySnapshotter, type Snapshotter } from "../src/snapshots/mod.ts";
import type { CallContext } from "../src/ttrpc/mod.ts";
import { buildBusyboxLayout } from "./support/image.ts";
import { freePort, startRegistry } from "./support/registry.ts";
import { runTool } from "./support/tool.ts";

const NS = "k8s.io";
const code = (c: Code) => (e: unknown) => isCode(e, c);
const CTX: CallContext = {
  service: "runtime.v1.ImageService",
  method: "test",
  metadata: new Map(),
  signal: new AbortController().signal,
};

/** Stores on a temporary root, a collector, and an ImageService over them. */
interface World {
  dir: string;
  store: ContentStore;
  md: Metadata;
  overlay: Snapshotter;
  gc: GarbageCollector;
  events: Exchange;
  service(registry: RegistryConfig): ReturnType<typeof imageService>;
  close(): Promise<void>;
}

async function openWorld(): Promise<World> {
  const dir = await Deno.makeTempDir({ prefix: "berth-cri-images-" });
  const store = await ContentStore.open(`${dir}/root/io.containerd.content.v1.content`);
  const md = await openMetadata(`${dir}/root`);
  const overlay = await OverlaySnapshotter.open(
    `${dir}/root/io.containerd.snapshotter.v1.overlayfs`,
  );
  const gc = new GarbageCollector({
    metadata: md,
    content: store,
    snapshotters: { overlayfs: overlay },
    delayMs: 0,
  });
  const events = new Exchange();
  const deps: Omit<ImageServiceDeps, "registry"> = {
    md,
    content: new NamespacedContent(store, md),
    snapshotters: { overlayfs: md.snapshotter(overlay) },
    gc: () => gc,
    events,
  };
  return {
    dir,
    store,
    md,
    overlay,
    gc,
    events,
    service: (registry) => imageService({ ...deps, registry }),
    async close() {
      gc.close();
      events.close();
      overlay.close();
      md.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await runTool(cmd, args, { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr}`);
}

/** Pushes the busybox layout to `ref` on a plain-HTTP registry; its manifest and config digests. */
async function push(
  layout: string,
  ref: string,
  creds?: { user: string; password: string },
): Promise<{ manifest: string; config: string; diffIds: string[] }> {
  await must("skopeo", [
    "copy",
    "--quiet",
    "--dest-tls-verify=false",
    ...(creds ? ["--dest-creds", `${creds.user}:${creds.password}`] : []),
    `oci:${layout}`,
    `docker://${ref}`,
  ]);
  const blob = (d: string) => `${layout}/blobs/sha256/${d.slice(7)}`;
  const manifest = JSON.parse(await Deno.readTextFile(`${layout}/index.json`)).manifests[0].digest;
  const config = JSON.parse(await Deno.readTextFile(blob(manifest))).config.digest;
  const diffIds = JSON.parse(await Deno.readTextFile(blob(config))).rootfs.diff_ids;
  return { manifest, config, diffIds };
}

const NO_REGISTRY: RegistryConfig = { mirrors: {}, configs: {} };

Deno.test("cri images: pull through a mirror, status, list, remove by tag, id and digest, fs info (over gRPC)", async () => {
  const w = await openWorld();
  const reg = await startRegistry(`${w.dir}/registry`);
  const server = new GrpcServer();
  let client: GrpcClient | undefined;
  try {
    const layout = await buildBusyboxLayout(w.dir);
    const pushed = await push(layout, `${reg.host}/test/busybox:1`);
    // The first mirror is down: the second one serves.
    const registry: RegistryConfig = {
      mirrors: {
        "registry.k8s.io": { endpoint: [`http://127.0.0.1:${freePort()}`, `http://${reg.host}`] },
      },
      configs: {},
    };
    server.register(ImageService, w.service(registry));
    await server.listen(`${w.dir}/cri.sock`);
    client = new GrpcClient(`${w.dir}/cri.sock`);
    const c = client;
    const m = ImageService.method;
    const seen = w.events.subscribe(['topic~="^/images/"']);

    const ref = "registry.k8s.io/test/busybox:1";
    const repoDigest = `registry.k8s.io/test/busybox@${pushed.manifest}`;
    const id = pushed.config;
    assert.equal((await c.unary(m.pullImage, { image: { image: ref } })).imageRef, id);
    const records = w.md.images.list(NS);
    assert.deepEqual(records.map((r) => r.name).sort(), [ref, repoDigest, id].sort());
    for (const r of records) {
      assert.equal(r.labels["io.cri-containerd.image"], "managed", r.name);
      assert.equal(r.target.digest, pushed.manifest);
    }
    const chain = chainIds(pushed.diffIds).at(-1)!;
    assert.equal((await w.md.snapshotter(w.overlay).stat(NS, chain)).kind, "committed");
    const topics = async (n: number) => {
      const out: string[] = [];
      for (let i = 0; i < n; i++) out.push((await seen.next()).value!.topic);
      return out;
    };
    assert.deepEqual(await topics(3), Array(3).fill("/images/create"));

    const status = await c.unary(m.imageStatus, { image: { image: ref }, verbose: true });
    assert.equal(status.image?.id, id);
    assert.deepEqual(status.image?.repoTags, [ref]);
    assert.deepEqual(status.image?.repoDigests, [repoDigest]);
    assert.ok(status.image!.size > 1_000_000n, String(status.image?.size)); // busybox itself
    assert.equal(status.image?.uid, undefined);
    assert.equal(status.image?.username, "");
    assert.equal(status.image?.spec?.image, id);
    const info = JSON.parse(status.info.info);
    assert.equal(info.chainID, chain);
    assert.deepEqual(info.imageSpec.rootfs.diff_ids, pushed.diffIds);
    for (const name of [id, id.slice(7, 19), repoDigest, `${ref}@${pushed.manifest}`]) {
      assert.equal((await c.unary(m.imageStatus, { image: { image: name } })).image?.id, id, name);
    }
    const none = await c.unary(m.imageStatus, {
      image: { image: "registry.k8s.io/test/busybox:2" },
    });
    assert.equal(none.image, undefined);

    // The same image by its registry's own name (loopback: plain HTTP by default).
    const direct = `${reg.host}/test/busybox:1`;
    assert.equal((await c.unary(m.pullImage, { image: { image: direct } })).imageRef, id);
    assert.deepEqual(await topics(2), Array(2).fill("/images/create"), "name and its repo@digest");
    const listed = await c.unary(m.listImages, {});
    assert.equal(listed.images.length, 1);
    assert.deepEqual(listed.images[0].repoTags.sort(), [direct, ref].sort());
    const filtered = await c.unary(m.listImages, { filter: { image: { image: direct } } });
    assert.deepEqual(filtered.images.map((i) => i.id), [id]);
    assert.equal(
      (await c.unary(m.listImages, { filter: { image: { image: "nothere" } } })).images.length,
      0,
    );

    const fs = (await c.unary(m.imageFsInfo, {})).imageFilesystems;
    assert.equal(fs.length, 1);
    assert.equal(fs[0].fsId?.mountpoint, w.overlay.root);
    assert.ok(fs[0].usedBytes!.value > 1_000_000n, String(fs[0].usedBytes?.value));
    assert.ok(fs[0].inodesUsed!.value > 2n, String(fs[0].inodesUsed?.value));
    assert.ok(fs[0].timestamp > BigInt(Date.now() - 60_000) * 1_000_000n);

    await assert.rejects(
      c.unary(m.pullImage, { image: { image: `${reg.host}/test/busybox:missing` } }),
      code(Code.NotFound),
    );
    // Not in the mirror, and registry.k8s.io itself is out of reach here: that error wins.
    await assert.rejects(
      c.unary(m.pullImage, { image: { image: "registry.k8s.io/test/busybox:missing" } }),
      code(Code.Unavailable),
    );
    for (const bad of ["", "Upper/Case:1", "busybox@sha256:abc"]) {
      await assert.rejects(
        c.unary(m.pullImage, { image: { image: bad } }),
        code(Code.InvalidArgument),
        bad,
      );
    }

    // Removing by any name removes every name of the image; the collector takes the rest.
    for (const by of [ref, id, repoDigest]) {
      if (by !== ref) await c.unary(m.pullImage, { image: { image: ref } });
      await c.unary(m.removeImage, { image: { image: by } });
      if (by === ref) assert.deepEqual(await topics(5), Array(5).fill("/images/delete"));
      assert.deepEqual(w.md.images.list(NS).map((r) => r.name), [], by);
      assert.equal((await c.unary(m.imageStatus, { image: { image: ref } })).image, undefined);
      assert.deepEqual((await w.store.list()).length, 0, `blobs left after removing by ${by}`);
      assert.deepEqual(await w.overlay.list(), [], `snapshots left after removing by ${by}`);
      await c.unary(m.removeImage, { image: { image: by } }); // again: nothing to do, no error
    }
    await seen.return?.();
  } finally {
    await client?.close();
    await server.shutdown({ timeoutMs: 1000 });
    await reg.stop();
    await w.close();
  }
});

Deno.test("cri images: htpasswd credentials from the request (user/password, base64 auth) and from the config", async () => {
  const w = await openWorld();
  const creds = { user: "kube", password: "pull-s3cret" };
  const reg = await startRegistry(`${w.dir}/registry`, creds);
  try {
    const layout = await buildBusyboxLayout(w.dir);
    const ref = `${reg.host}/team/busybox:auth`;
    const { config: id } = await push(layout, ref, creds);
    const svc = w.service(NO_REGISTRY);
    const pull = (auth?: Record<string, string>) =>
      Promise.resolve(
        svc.pullImage!(create(PullImageRequestSchema, { image: { image: ref }, auth }), CTX),
      );
    const remove = () =>
      svc.removeImage!(create(RemoveImageRequestSchema, { image: { image: ref } }), CTX);
    await assert.rejects(pull(), code(Code.PermissionDenied));
    await assert.rejects(
      pull({ username: creds.user, password: "wrong" }),
      code(Code.PermissionDenied),
    );
    // Credentials for another server are not sent to this one.
    await assert.rejects(
      pull({ ...{ username: creds.user, password: creds.password }, serverAddress: "other:5000" }),
      code(Code.PermissionDenied),
    );
    assert.equal((await pull({ username: creds.user, password: creds.password })).imageRef, id);
    await remove();
    assert.equal((await pull({ auth: btoa(`${creds.user}:${creds.password}`) })).imageRef, id);
    await remove();
    const configured = w.service({
      mirrors: {},
      configs: {
        [reg.host]: {
          auth: { username: creds.user, password: creds.password, auth: "", identitytoken: "" },
        },
      },
    });
    const r = await configured.pullImage!(
      create(PullImageRequestSchema, { image: { image: ref } }),
      CTX,
    );
    assert.equal(r.imageRef, id);
  } finally {
    await reg.stop();
    await w.close();
  }
});

/**
 * A registry API in this process that answers every manifest with 404 once
 * the request carries `Bearer <access>`, and with a bearer challenge
 * otherwise; its token service trades the refresh token `refresh` (OAuth2
 * POST) for `access`. Over TLS when `tls` is given.
 */
function tokenRegistry(
  access: string,
  refresh: string,
  tls?: { cert: string; key: string },
): { host: string; requests: string[]; stop(): Promise<void> } {
  const requests: string[] = [];
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen: () => {},
    ...(tls ?? {}),
  }, async (req) => {
    const u = new URL(req.url);
    if (u.pathname === "/token") {
      const form = req.method === "POST" ? new URLSearchParams(await req.text()) : u.searchParams;
      requests.push(`${req.method} /token ${form.get("grant_type") ?? ""} ${form.get("scope")}`);
      if (form.get("grant_type") === "refresh_token" && form.get("refresh_token") === refresh) {
        return Response.json({ access_token: access });
      }
      return new Response("no", { status: 401 });
    }
    const auth = req.headers.get("authorization") ?? "";
    requests.push(`${req.method} ${u.pathname} ${auth}`);
    if (auth === `Bearer ${access}`) {
      return Response.json({ errors: [{ code: "MANIFEST_UNKNOWN" }] }, { status: 404 });
    }
    return new Response("", {
      status: 401,
      headers: {
        "www-authenticate": `Bearer realm="${tls ? "https" : "http"}://${
          req.headers.get("host")
        }/token",service="fake"`,
      },
    });
  });
  const host = `127.0.0.1:${server.addr.port}`;
  return { host, requests, stop: () => server.shutdown() };
}

Deno.test("cri images: an identity token is traded at the token service; a registry token is sent as it is", async () => {
  const w = await openWorld();
  const fake = tokenRegistry("access-1", "refresh-1");
  try {
    const svc = w.service(NO_REGISTRY);
    const pull = (auth: Record<string, string>) =>
      Promise.resolve(
        svc.pullImage!(
          create(PullImageRequestSchema, { image: { image: `${fake.host}/x/y:1` }, auth }),
          CTX,
        ),
      );
    // NotFound means the manifest request got through with the access token.
    await assert.rejects(pull({ identityToken: "refresh-1" }), code(Code.NotFound));
    assert.deepEqual(fake.requests, [
      "GET /v2/x/y/manifests/1 ",
      "POST /token refresh_token repository:x/y:pull",
      "GET /v2/x/y/manifests/1 Bearer access-1",
    ]);
    fake.requests.length = 0;
    await assert.rejects(pull({ registryToken: "access-1" }), code(Code.NotFound));
    assert.deepEqual(fake.requests, ["GET /v2/x/y/manifests/1 Bearer access-1"]);
    await assert.rejects(pull({ identityToken: "stale" }), code(Code.PermissionDenied));
  } finally {
    await fake.stop();
    await w.close();
  }
});

Deno.test("cri images: a registry's CA from configs.<host>.tls.ca_file is trusted; without it the pull fails", async () => {
  const w = await openWorld();
  const dir = `${w.dir}/tls`;
  await Deno.mkdir(dir);
  // A CA, and the registry's certificate for 127.0.0.1 signed by it.
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await must("openssl", [
    "req",
    "-x509",
    ...ec,
    "-days",
    "1",
    "-subj",
    "/CN=berth test CA",
    "-keyout",
    `${dir}/ca.key`,
    "-out",
    `${dir}/ca.pem`,
  ]);
  await must("openssl", [
    "req",
    ...ec,
    "-subj",
    "/CN=127.0.0.1",
    "-keyout",
    `${dir}/key.pem`,
    "-out",
    `${dir}/req.pem`,
  ]);
  await Deno.writeTextFile(`${dir}/ext.cnf`, "subjectAltName=IP:127.0.0.1\n");
  await must("openssl", [
    "x509",
    "-req",
    "-in",
    `${dir}/req.pem`,
    "-CA",
    `${dir}/ca.pem`,
    "-CAkey",
    `${dir}/ca.key`,
    "-CAcreateserial",
    "-days",
    "1",
    "-extfile",
    `${dir}/ext.cnf`,
    "-out",
    `${dir}/cert.pem`,
  ]);
  const fake = tokenRegistry("a", "r", {
    cert: await Deno.readTextFile(`${dir}/cert.pem`),
    key: await Deno.readTextFile(`${dir}/key.pem`),
  });
  try {
    // Loopback defaults to plain HTTP: the mirror entry asks for https on the host itself.
    const mirrors = { [fake.host]: { endpoint: [`https://${fake.host}`] } };
    const req = create(PullImageRequestSchema, {
      image: { image: `${fake.host}/x/y:1` },
      auth: { registryToken: "a" },
    });
    const tls = {
      insecure_skip_verify: false,
      ca_file: `${dir}/ca.pem`,
      cert_file: "",
      key_file: "",
    };
    const trusted = w.service({ mirrors, configs: { [fake.host]: { tls } } });
    await assert.rejects(Promise.resolve(trusted.pullImage!(req, CTX)), code(Code.NotFound));
    assert.deepEqual(fake.requests, ["GET /v2/x/y/manifests/1 Bearer a"]);
    // A client certificate is loaded and offered (this server does not ask for one).
    const withCert = w.service({
      mirrors,
      configs: {
        [fake.host]: { tls: { ...tls, cert_file: `${dir}/cert.pem`, key_file: `${dir}/key.pem` } },
      },
    });
    await assert.rejects(Promise.resolve(withCert.pullImage!(req, CTX)), code(Code.NotFound));
    const badKey = w.service({
      mirrors,
      configs: {
        [fake.host]: { tls: { ...tls, cert_file: `${dir}/cert.pem`, key_file: `${dir}/ext.cnf` } },
      },
    });
    await assert.rejects(Promise.resolve(badKey.pullImage!(req, CTX)), code(Code.InvalidArgument));
    const untrusted = w.service({ mirrors, configs: {} });
    await assert.rejects(
      Promise.resolve(untrusted.pullImage!(req, CTX)),
      (e) => isCode(e, Code.Unavailable) && /certificate|UnknownIssuer/i.test((e as Error).message),
    );
    const skip = w.service({
      mirrors,
      configs: { [fake.host]: { tls: { ...tls, ca_file: "", insecure_skip_verify: true } } },
    });
    await assert.rejects(
      Promise.resolve(skip.pullImage!(req, CTX)),
      (e) => isCode(e, Code.Unimplemented) && /insecure_skip_verify/.test((e as Error).message),
    );
  } finally {
    await fake.stop();
    await w.close();
  }
});
