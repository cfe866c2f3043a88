// Images end to end over berth's local stores: archives written by umoci,
// skopeo and berth itself, an export that Debian's containerd imports and
// runs, pulls from a real registry (plain and with basic auth), a corrupt
// blob refused, concurrent imports, and garbage collection afterwards.

import assert from "node:assert/strict";
import { ContentStore } from "../src/content/mod.ts";
import { packTar, type TarOut } from "../src/archive/mod.ts";
import { Digester, digestOf } from "../src/content/mod.ts";
import { Code, isCode } from "../src/errdefs/mod.ts";
import { GarbageCollector } from "../src/gc/mod.ts";
import {
  chainIds,
  exportArchive,
  type ImageBackend,
  importArchive,
  importDirectory,
  localBackend,
  pullImage,
  type PullProgress,
  readJson,
  resolveManifest,
} from "../src/images/mod.ts";
import { type Metadata, openMetadata } from "../src/metadata/mod.ts";
import { NamespacedContent } from "../src/services/content/namespaced.ts";
import { NativeSnapshotter, OverlaySnapshotter, type Snapshotter } from "../src/snapshots/mod.ts";
import { makeBusyboxRootfs } from "./support/bundle.ts";
import { startContainerd } from "./support/containerd.ts";
import {
  buildBusyboxImage,
  buildBusyboxLayout,
  buildLargeImage,
  BUSYBOX_REF,
} from "./support/image.ts";
import { startRegistry } from "./support/registry.ts";
import { runTool } from "./support/tool.ts";
import { spawn } from "../src/spawn/mod.ts";
import { applyOverrides, parseConfig } from "../src/config/mod.ts";
import {
  contentPlugin,
  exchangePlugin,
  metadataPlugin,
  overlayfsPlugin,
} from "../src/daemon/plugins.ts";
import { startDaemon } from "../src/daemon/mod.ts";
import { setLogSink } from "../src/log/mod.ts";
import { Content } from "../src/gen/containerd/services/content/v1/content_pb.ts";
import { Diff } from "../src/gen/containerd/services/diff/v1/diff_pb.ts";
import { Snapshots } from "../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type { Registration } from "../src/plugin/mod.ts";
import { contentServicePlugin } from "../src/services/content/mod.ts";
import { diffPlugin } from "../src/services/diff/mod.ts";
import { snapshotsPlugin } from "../src/services/snapshots/mod.ts";
import { connect, NAMESPACE_METADATA_KEY, serviceClient } from "../src/ttrpc/mod.ts";

const NS = "default";

/** A berth root with every store open, and a backend over it. */
interface World {
  dir: string;
  store: ContentStore;
  md: Metadata;
  overlay: Snapshotter;
  native: Snapshotter;
  backend: ImageBackend;
  gc: GarbageCollector;
  close(): Promise<void>;
}

async function openWorld(): Promise<World> {
  const dir = await Deno.makeTempDir({ prefix: "berth-images-" });
  const store = await ContentStore.open(`${dir}/root/io.containerd.content.v1.content`);
  const md = await openMetadata(`${dir}/root`);
  const overlay: Snapshotter = await OverlaySnapshotter.open(
    `${dir}/root/io.containerd.snapshotter.v1.overlayfs`,
  );
  const native: Snapshotter = await NativeSnapshotter.open(
    `${dir}/root/io.containerd.snapshotter.v1.native`,
  );
  const content = new NamespacedContent(store, md);
  const backend = localBackend({
    content,
    md,
    snapshotters: { overlayfs: md.snapshotter(overlay), native: md.snapshotter(native) },
  }, NS);
  const gc = new GarbageCollector({
    metadata: md,
    content: store,
    snapshotters: { overlayfs: overlay, native },
    delayMs: 0,
  });
  return {
    dir,
    store,
    md,
    overlay,
    native,
    backend,
    gc,
    async close() {
      gc.close();
      overlay.close();
      native.close();
      md.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

async function fileStream(path: string): Promise<ReadableStream<Uint8Array>> {
  return (await Deno.open(path, { read: true })).readable;
}

/** The directory of the topmost committed layer under an active snapshot's mounts. */
function topLayerDir(mounts: { type: string; source: string; options: string[] }[]): string {
  assert.equal(mounts.length, 1);
  const m = mounts[0];
  if (m.type === "bind") return m.source;
  const lower = m.options.find((o) => o.startsWith("lowerdir="));
  assert.ok(lower, JSON.stringify(m));
  return lower.slice("lowerdir=".length).split(":")[0];
}

async function blobCount(w: World): Promise<number> {
  return (await w.store.list()).length;
}

Deno.test("images: a umoci archive imports, unpacks by chain id, and re-imports as a no-op", async () => {
  const w = await openWorld();
  try {
    const img = await buildBusyboxImage(w.dir);
    const r = await importArchive(w.backend, await fileStream(img.archive));
    assert.deepEqual(r.images.map((i) => i.name), [BUSYBOX_REF]);
    const { manifest } = await resolveManifest(w.backend.content, r.images[0].target);
    const cfg = await readJson<{ rootfs: { diff_ids: string[] } }>(
      w.backend.content,
      manifest.config.digest,
    );
    const top = chainIds(cfg.rootfs.diff_ids).at(-1)!;
    assert.equal(r.unpacked[BUSYBOX_REF].chainId, top);
    const info = await w.md.snapshotter(w.overlay).stat(NS, top);
    assert.equal(info.kind, "committed");
    // The layer's files are in the snapshot.
    const mounts = await w.backend.snapshots().prepare("check", top);
    assert.ok(
      (await Deno.lstat(`${topLayerDir(mounts)}/bin/busybox`)).isFile,
      JSON.stringify(mounts),
    );
    await w.backend.snapshots().remove("check");
    // GC labels as containerd sets them.
    const mrec = w.md.content.info(NS, r.images[0].target.digest);
    assert.equal(mrec.labels["containerd.io/gc.ref.content.config"], manifest.config.digest);
    assert.equal(mrec.labels["containerd.io/gc.ref.content.l.0"], manifest.layers[0].digest);
    assert.equal(
      w.md.content.info(NS, manifest.config.digest)
        .labels["containerd.io/gc.ref.snapshot.overlayfs"],
      top,
    );
    assert.equal(
      w.md.content.info(NS, manifest.layers[0].digest).labels["containerd.io/uncompressed"],
      cfg.rootfs.diff_ids[0],
    );
    // Again: nothing new is written or applied.
    const steps: string[] = [];
    const again = await importArchive(w.backend, await fileStream(img.archive), {
      onProgress: (p) => steps.push(p.status),
    });
    assert.deepEqual([...new Set(steps)], ["exists", "unpacked", "created"]);
    assert.equal(again.written, 0);
    assert.equal(again.unpacked[BUSYBOX_REF].applied, 0);
    assert.equal(w.md.leases.list(NS).length, 0, "the import's lease is gone");
  } finally {
    await w.close();
  }
});

async function must(
  cmd: string,
  args: string[],
  opts: { env?: Record<string, string> } = {},
): Promise<string> {
  const r = await runTool(cmd, args, { timeoutMs: 300_000, env: opts.env });
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  }
  return r.stdout;
}

Deno.test("images: archives written by skopeo (oci-archive and docker-archive) import", async () => {
  const w = await openWorld();
  try {
    const layout = await buildBusyboxLayout(w.dir);
    const oci = `${w.dir}/skopeo-oci.tar`;
    const docker = `${w.dir}/skopeo-docker.tar`;
    await must("skopeo", ["copy", "--quiet", "oci:" + layout, `oci-archive:${oci}:v1`]);
    await must("skopeo", [
      "copy",
      "--quiet",
      "oci:" + layout,
      `docker-archive:${docker}:example.com/tools/busybox:v2`,
    ]);

    // skopeo names the entry with the bare tag: without a base name nothing is named.
    await assert.rejects(importArchive(w.backend, await fileStream(oci)), /names no image/);
    const a = await importArchive(w.backend, await fileStream(oci), {
      baseName: "example.com/tools/busybox",
    });
    assert.deepEqual(a.images.map((i) => i.name), ["example.com/tools/busybox:v1"]);

    const d = await importArchive(w.backend, await fileStream(docker));
    assert.deepEqual(d.images.map((i) => i.name), ["example.com/tools/busybox:v2"]);
    assert.equal(
      d.images[0].target.mediaType,
      "application/vnd.docker.distribution.manifest.v2+json",
    );
    // Both describe the same root file system: the same top chain id, unpacked once.
    assert.equal(
      d.unpacked["example.com/tools/busybox:v2"].chainId,
      a.unpacked["example.com/tools/busybox:v1"].chainId,
    );
    assert.equal(d.unpacked["example.com/tools/busybox:v2"].applied, 0);
  } finally {
    await w.close();
  }
});

Deno.test("images: a directory imported and exported by berth imports into containerd and runs there", async () => {
  const w = await openWorld();
  const ctd = await startContainerd();
  try {
    const rootfs = `${w.dir}/rootfs`;
    await makeBusyboxRootfs(rootfs);
    await Deno.writeTextFile(`${rootfs}/etc/hello`, "made by berth\n");
    const { image, unpacked } = await importDirectory(w.backend, rootfs, "berth.test/busybox:dir", {
      cmd: ["sh"],
    });
    assert.equal(image.name, "berth.test/busybox:dir");
    assert.equal(image.target.mediaType, "application/vnd.oci.image.index.v1+json");
    assert.equal(unpacked?.layers, 1);

    const archive = `${w.dir}/export.tar`;
    const out = await Deno.open(archive, { write: true, create: true, truncate: true });
    await (await exportArchive(w.backend, [image.name])).pipeTo(out.writable);
    const listing = await must("tar", ["-tf", archive]);
    assert.match(listing, /^index\.json$/m);
    assert.match(listing, /^manifest\.json$/m);
    assert.match(listing, /^oci-layout$/m);

    const imp = await ctd.ctr(["images", "import", archive]);
    assert.equal(imp.code, 0, imp.stderr);
    const ls = await ctd.ctr(["images", "ls", "-q"]);
    assert.match(ls.stdout, /^berth\.test\/busybox:dir$/m);
    const run = await ctd.ctr(["run", "--rm", image.name, `c${Date.now()}`, "cat", "/etc/hello"], {
      timeoutMs: 60_000,
    });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, "made by berth\n");

    // And berth reads its own export back (into another store).
    const w2 = await openWorld();
    try {
      const back = await importArchive(w2.backend, await fileStream(archive));
      assert.deepEqual(back.images.map((i) => i.target.digest), [image.target.digest]);
    } finally {
      await w2.close();
    }
  } finally {
    await ctd.stop();
    await w.close();
  }
});

function fileEntry(name: string, bytes: Uint8Array): TarOut {
  return {
    header: {
      name,
      type: "file",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: bytes.length,
      mtime: new Date(0),
    },
    data: (async function* () {
      yield bytes;
    })(),
  };
}

Deno.test("images: a blob whose bytes do not match its digest is refused and nothing of it stays", async () => {
  const w = await openWorld();
  try {
    const enc = new TextEncoder();
    const claimed = digestOf("the real layer");
    const entries = [
      fileEntry("oci-layout", enc.encode('{"imageLayoutVersion":"1.0.0"}')),
      fileEntry(`blobs/sha256/${claimed.slice(7)}`, enc.encode("a forged layer")),
      fileEntry("index.json", enc.encode('{"schemaVersion":2,"manifests":[]}')),
    ];
    const tar = packTar((async function* () {
      yield* entries;
    })());
    const err = await importArchive(w.backend, tar).then(() => undefined, (e) => e);
    assert.ok(isCode(err, Code.FailedPrecondition), String(err));
    assert.match(String(err), /unexpected commit digest/);
    assert.equal(await blobCount(w), 0);
    assert.deepEqual(await w.store.listStatuses(), [], "no ingest left");
    assert.deepEqual(w.md.content.listIngests(NS), []);
    assert.deepEqual(w.md.content.list(NS), []);
    assert.equal(w.md.leases.list(NS).length, 0);
  } finally {
    await w.close();
  }
});

Deno.test("images: two concurrent imports of one image both succeed with one copy of each blob", async () => {
  const w = await openWorld();
  try {
    const img = await buildBusyboxImage(w.dir);
    const [a, b] = await Promise.all([
      importArchive(w.backend, await fileStream(img.archive)),
      importArchive(w.backend, await fileStream(img.archive)),
    ]);
    assert.equal(a.images[0].target.digest, b.images[0].target.digest);
    const inArchive = (await must("tar", ["-tf", img.archive])).split("\n").filter((l) =>
      /blobs\/sha256\/./.test(l)
    );
    assert.equal(await blobCount(w), inArchive.length);
    assert.equal(w.md.content.list(NS).length, inArchive.length);
    // One committed snapshot per layer, whoever applied it.
    const snaps = await w.md.snapshotter(w.overlay).list(NS);
    assert.deepEqual(snaps.map((s) => s.kind), ["committed"]);
    assert.deepEqual(await w.store.listStatuses(), []);
  } finally {
    await w.close();
  }
});

Deno.test("images: unpacking into the native snapshotter gives the same tree", async () => {
  const w = await openWorld();
  try {
    const img = await buildBusyboxImage(w.dir);
    const r = await importArchive(w.backend, await fileStream(img.archive), {
      snapshotter: "native",
    });
    const top = r.unpacked[BUSYBOX_REF].chainId;
    const mounts = await w.backend.snapshots("native").prepare("look", top);
    assert.equal(mounts[0].type, "bind");
    assert.equal(await Deno.readLink(`${mounts[0].source}/bin/sh`), "busybox");
    await w.backend.snapshots("native").remove("look");
  } finally {
    await w.close();
  }
});

Deno.test("images: GC after image removal deletes unreferenced blobs and snapshots, keeps leased ones", async () => {
  const w = await openWorld();
  try {
    const img = await buildBusyboxImage(w.dir);
    const a = await importArchive(w.backend, await fileStream(img.archive));
    const rootfs = `${w.dir}/rootfs`;
    await Deno.mkdir(`${rootfs}/etc`, { recursive: true });
    await Deno.writeTextFile(`${rootfs}/etc/only-here`, "x");
    const d = await importDirectory(w.backend, rootfs, "berth.test/small:1");
    const sn = w.md.snapshotter(w.overlay);
    assert.equal((await sn.list(NS)).length, 2);

    // A blob held only by a lease.
    w.md.leases.create(NS, "keep");
    const leased = localBackend(
      { content: new NamespacedContent(w.store, w.md), md: w.md, snapshotters: {} },
      NS,
      "keep",
    );
    const w1 = await leased.content.writer("leased-blob");
    await w1.write(new TextEncoder().encode("leased bytes"));
    const leasedDigest = await w1.commit(0);

    await w.gc.collect();
    const before = await blobCount(w);
    assert.equal((await sn.list(NS)).length, 2, "nothing is collected while images reference it");

    w.md.images.delete(NS, d.image.name);
    await w.gc.collect();
    const left = (await w.store.list()).map((i) => i.digest);
    assert.ok(!left.includes(d.image.target.digest), "the removed image's index is gone");
    assert.equal(left.length, before - 4, "index, manifest, config and layer of the removed image");
    assert.ok(left.includes(a.images[0].target.digest));
    assert.ok(left.includes(leasedDigest), "the leased blob stays");
    const snaps = await sn.list(NS);
    assert.deepEqual(snaps.map((s) => s.name), [a.unpacked[BUSYBOX_REF].chainId]);
    assert.deepEqual((await w.overlay.list()).length, 1, "the backend snapshot is removed too");

    w.md.images.delete(NS, BUSYBOX_REF);
    w.md.leases.delete(NS, "keep");
    await w.gc.collect();
    assert.equal(await blobCount(w), 0);
    assert.equal((await w.overlay.list()).length, 0);
  } finally {
    await w.close();
  }
});

Deno.test("images: pull from a real registry (plain HTTP), resuming an interrupted layer, with progress", async () => {
  const w = await openWorld();
  const reg = await startRegistry(`${w.dir}/registry`);
  try {
    const layout = await buildBusyboxLayout(w.dir);
    const ref = `${reg.host}/busybox:t`;
    await must("skopeo", [
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      `oci:${layout}`,
      `docker://${ref}`,
    ]);
    const pushed = JSON.parse(await Deno.readTextFile(`${layout}/index.json`)).manifests[0];
    const manifest = JSON.parse(
      await Deno.readTextFile(`${layout}/blobs/sha256/${pushed.digest.slice(7)}`),
    );
    const layer = manifest.layers[0];

    // An earlier pull stopped after the first 1000 bytes of the layer.
    const head = (await Deno.readFile(`${layout}/blobs/sha256/${layer.digest.slice(7)}`)).subarray(
      0,
      1000,
    );
    const partial = await w.backend.withLease(async () => {
      const pw = await w.backend.content.writer(`pull-${layer.digest}`, {
        total: layer.size,
        expected: layer.digest,
      });
      await pw.write(head);
      await pw.close();
      return pw.offset;
    });
    assert.equal(partial, 1000);

    const events: PullProgress[] = [];
    await assert.rejects(
      pullImage(w.backend, ref),
      /https|TLS|tls|ssl|certificate|record|connect/i,
    );
    const r = await pullImage(w.backend, ref, {
      plainHttp: true,
      onProgress: (p) => events.push(p),
    });
    assert.equal(r.image.name, `${reg.host}/busybox:t`);
    assert.equal(r.fetched, 2, "config and layer");
    const started = events.find((e) => e.digest === layer.digest && e.status === "downloading");
    assert.equal(started?.resumedAt, 1000, "the layer download resumed at the ingest's offset");
    assert.ok(events.some((e) => e.digest === layer.digest && e.status === "done"));
    assert.ok(events.some((e) => e.status === "resolved"));
    assert.ok(events.some((e) => e.status === "unpacked"));
    const top = r.unpacked!.chainId;
    const mounts = await w.backend.snapshots().prepare("rootfs", top);
    assert.ok((await Deno.lstat(`${topLayerDir(mounts)}/bin/busybox`)).isFile);
    await w.backend.snapshots().remove("rootfs");
    assert.deepEqual(await w.store.listStatuses(), []);

    // A second pull finds everything present.
    const again = await pullImage(w.backend, ref, { plainHttp: true });
    assert.equal(again.fetched, 0);
    assert.equal(again.unpacked?.applied, 0);
    await assert.rejects(
      pullImage(w.backend, `${reg.host}/busybox:missing`, { plainHttp: true }),
      (e) => isCode(e, Code.NotFound),
    );
  } finally {
    await reg.stop();
    await w.close();
  }
});

Deno.test("images: a registry with htpasswd basic auth refuses anonymous pulls and serves with credentials", async () => {
  const w = await openWorld();
  const auth = { user: "berth", password: "s3cret-pw" };
  const reg = await startRegistry(`${w.dir}/registry`, auth);
  try {
    const layout = await buildBusyboxLayout(w.dir);
    const ref = `${reg.host}/team/busybox:auth`;
    await must("skopeo", [
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      "--dest-creds",
      `${auth.user}:${auth.password}`,
      `oci:${layout}`,
      `docker://${ref}`,
    ]);
    const anon = await pullImage(w.backend, ref, { plainHttp: true }).then(
      () => undefined,
      (e) => e,
    );
    assert.ok(isCode(anon, Code.PermissionDenied), String(anon));
    const wrong = await pullImage(w.backend, ref, {
      plainHttp: true,
      username: auth.user,
      password: "nope",
    })
      .then(() => undefined, (e) => e);
    assert.ok(isCode(wrong, Code.PermissionDenied), String(wrong));
    const r = await pullImage(w.backend, ref, {
      plainHttp: true,
      username: auth.user,
      password: auth.password,
    });
    assert.equal(r.image.name, ref);
    assert.equal(r.unpacked?.layers, 1);
  } finally {
    await reg.stop();
    await w.close();
  }
});

Deno.test("images: an import killed with SIGKILL midway leaves no corrupt blob, and importing again succeeds", async () => {
  const w = await openWorld();
  try {
    const img = await buildLargeImage(w.dir, 48, 2);
    // The same import in another process, killed once a layer is partly written.
    const script = `${w.dir}/import.ts`;
    const mod = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
    await Deno.writeTextFile(
      script,
      `import { ContentStore } from ${mod("../src/content/mod.ts")};
import { importArchive, localBackend } from ${mod("../src/images/mod.ts")};
import { openMetadata } from ${mod("../src/metadata/mod.ts")};
import { NamespacedContent } from ${mod("../src/services/content/namespaced.ts")};
import { OverlaySnapshotter } from ${mod("../src/snapshots/mod.ts")};
const root = ${JSON.stringify(`${w.dir}/root`)};
const store = await ContentStore.open(root + "/io.containerd.content.v1.content");
const md = await openMetadata(root);
const ov = await OverlaySnapshotter.open(root + "/io.containerd.snapshotter.v1.overlayfs");
const b = localBackend({ content: new NamespacedContent(store, md), md, snapshotters: { overlayfs: md.snapshotter(ov) } }, "default");
const f = await Deno.open(${JSON.stringify(img.archive)});
await importArchive(b, f.readable);
`,
    );
    const config = new URL("../deno.json", import.meta.url).pathname;
    const child = spawn(Deno.execPath(), ["run", "-A", "--quiet", "--config", config, script], {
      stdin: "null",
      stdout: "null",
      stderr: "null",
    });
    const ingest = `${w.store.root}/ingest`;
    const deadline = Date.now() + 120_000;
    let killedMidway = false;
    while (Date.now() < deadline) {
      let bytes = 0;
      for await (const e of Deno.readDir(ingest)) {
        bytes += (await Deno.stat(`${ingest}/${e.name}/data`).catch(() => ({ size: 0 }))).size;
      }
      if (bytes > 4 << 20) {
        Deno.kill(child.pid, "SIGKILL");
        killedMidway = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 5));
    }
    if (!killedMidway) Deno.kill(child.pid, "SIGKILL");
    const status = await child.status;
    assert.ok(killedMidway, "the import was caught with a layer half written");
    assert.equal(status.signal, "SIGKILL");

    // Every blob that made it is whole: its bytes hash to its name.
    for (const info of await w.store.list()) {
      const d = new Digester();
      for await (const c of await w.store.read(info.digest)) d.update(c);
      assert.equal(d.digest(), info.digest);
    }
    assert.ok((await w.store.listStatuses()).length > 0, "the interrupted ingest is still there");

    const r = await importArchive(w.backend, await fileStream(img.archive));
    assert.equal(r.images[0].name, img.ref);
    assert.equal(r.unpacked[img.ref].layers, 3);
    assert.deepEqual(await w.store.listStatuses(), [], "the interrupted ingest was taken over");
  } finally {
    await w.close();
  }
});

Deno.test("images: linux/amd64 is chosen from a multi-platform index, for labels, unpack and export", async () => {
  const w = await openWorld();
  try {
    const layout = await buildBusyboxLayout(w.dir);
    const enc = new TextEncoder();
    const put = async (doc: unknown) => {
      const bytes = enc.encode(JSON.stringify(doc));
      const digest = digestOf(bytes);
      await Deno.writeFile(`${layout}/blobs/sha256/${digest.slice(7)}`, bytes);
      return { digest, size: bytes.length };
    };
    const amd64 = JSON.parse(await Deno.readTextFile(`${layout}/index.json`)).manifests[0];
    // An arm64 manifest whose layer is not in the archive: choosing it would fail.
    const armConfig = await put({
      architecture: "arm64",
      os: "linux",
      rootfs: { type: "layers", diff_ids: [digestOf("x")] },
    });
    const armManifest = await put({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      config: { mediaType: "application/vnd.oci.image.config.v1+json", ...armConfig },
      layers: [{
        mediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
        digest: digestOf("missing"),
        size: 7,
      }],
    });
    const index = await put({
      schemaVersion: 2,
      mediaType: "application/vnd.oci.image.index.v1+json",
      manifests: [
        {
          mediaType: "application/vnd.oci.image.manifest.v1+json",
          ...armManifest,
          platform: { os: "linux", architecture: "arm64", variant: "v8" },
        },
        {
          mediaType: amd64.mediaType,
          digest: amd64.digest,
          size: amd64.size,
          platform: { os: "linux", architecture: "amd64" },
        },
      ],
    });
    await Deno.writeTextFile(
      `${layout}/index.json`,
      JSON.stringify({
        schemaVersion: 2,
        manifests: [{
          mediaType: "application/vnd.oci.image.index.v1+json",
          ...index,
          annotations: { "io.containerd.image.name": "example.com/multi:1" },
        }],
      }),
    );
    const archive = `${w.dir}/multi.tar`;
    await must("tar", ["-cf", archive, "-C", layout, "."]);

    const r = await importArchive(w.backend, await fileStream(archive));
    assert.equal(r.images[0].name, "example.com/multi:1");
    assert.equal(r.images[0].target.digest, index.digest);
    const labels = w.md.content.info(NS, index.digest).labels;
    assert.equal(labels["containerd.io/gc.ref.content.m.0"], amd64.digest);
    assert.equal(
      labels["containerd.io/gc.ref.content.m.1"],
      undefined,
      "the arm64 manifest is not kept by the image",
    );
    const { desc } = await resolveManifest(w.backend.content, r.images[0].target);
    assert.equal(desc.digest, amd64.digest);
    assert.equal(r.unpacked["example.com/multi:1"].layers, 1);

    const out = await Deno.open(`${w.dir}/multi-export.tar`, {
      write: true,
      create: true,
      truncate: true,
    });
    await (await exportArchive(w.backend, ["example.com/multi:1"])).pipeTo(out.writable);
    const listing = await must("tar", ["-tf", `${w.dir}/multi-export.tar`]);
    assert.match(listing, new RegExp(amd64.digest.slice(7)));
    assert.doesNotMatch(listing, new RegExp(armManifest.digest.slice(7)));
  } finally {
    await w.close();
  }
});

/**
 * A minimal registry in this process serving an OCI layout: bearer-token
 * auth (a token service at /token that wants basic credentials), and
 * optionally one blob served with a byte changed.
 */
function fakeRegistry(
  layout: string,
  opts: { user: string; password: string; corrupt?: string; dropOnce?: string },
) {
  const token = crypto.randomUUID();
  const seen = { tokenRequests: [] as string[], ranges: [] as string[] };
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const url = new URL(req.url);
    const host = url.host;
    if (url.pathname === "/token") {
      seen.tokenRequests.push(url.search);
      if (req.headers.get("authorization") !== `Basic ${btoa(`${opts.user}:${opts.password}`)}`) {
        return new Response("denied", { status: 401 });
      }
      return Response.json({ token });
    }
    if (req.headers.get("authorization") !== `Bearer ${token}`) {
      return new Response("unauthorized", {
        status: 401,
        headers: {
          "www-authenticate":
            `Bearer realm="http://${host}/token",service="fake-registry",scope="repository:busybox:pull"`,
        },
      });
    }
    const m = /^\/v2\/busybox\/(manifests|blobs)\/(.+)$/.exec(url.pathname);
    if (!m) return new Response("not found", { status: 404 });
    let digest = m[2];
    let mediaType = "application/octet-stream";
    if (m[1] === "manifests" && !digest.includes(":")) {
      const d = JSON.parse(await Deno.readTextFile(`${layout}/index.json`)).manifests[0];
      digest = d.digest;
      mediaType = d.mediaType;
    }
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = await Deno.readFile(`${layout}/blobs/${digest.replace(":", "/")}`);
    } catch {
      return new Response("unknown", { status: 404 });
    }
    if (m[1] === "blobs" && digest === opts.corrupt) bytes[bytes.length >> 1] ^= 0xff;
    if (m[1] === "blobs" && digest === opts.dropOnce) {
      opts.dropOnce = undefined;
      // Half the blob, then the connection breaks.
      const half = bytes.subarray(0, bytes.length >> 1);
      return new Response(
        new ReadableStream({
          start(c) {
            c.enqueue(half);
            setTimeout(() => c.error(new Error("connection dropped")), 20);
          },
        }),
        { headers: { "content-type": mediaType } },
      );
    }
    const range = /^bytes=(\d+)-$/.exec(req.headers.get("range") ?? "");
    if (m[1] === "blobs" && range) {
      seen.ranges.push(range[0]);
      const from = Number(range[1]);
      return new Response(bytes.slice(from), {
        status: 206,
        headers: { "content-range": `bytes ${from}-${bytes.length - 1}/${bytes.length}` },
      });
    }
    return new Response(bytes, {
      headers: { "content-type": mediaType, "docker-content-digest": digest },
    });
  });
  return {
    host: `127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    seen,
    close: () => server.shutdown(),
  };
}

Deno.test("images: bearer-token auth from the WWW-Authenticate challenge; a corrupt layer from the registry leaves nothing", async () => {
  const w = await openWorld();
  const layout = await buildBusyboxLayout(w.dir);
  const index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`)).manifests[0];
  const manifest = JSON.parse(
    await Deno.readTextFile(`${layout}/blobs/sha256/${index.digest.slice(7)}`),
  );
  const layer = manifest.layers[0].digest;
  const creds = { user: "puller", password: "pw" };
  const good = fakeRegistry(layout, creds);
  const bad = fakeRegistry(layout, { ...creds, corrupt: layer });
  try {
    const denied = await pullImage(w.backend, `${good.host}/busybox:t`, { plainHttp: true })
      .then(() => undefined, (e) => e);
    assert.ok(isCode(denied, Code.PermissionDenied), String(denied));

    const failed = await pullImage(w.backend, `${bad.host}/busybox:t`, {
      plainHttp: true,
      username: creds.user,
      password: creds.password,
    }).then(() => undefined, (e) => e);
    assert.ok(isCode(failed, Code.FailedPrecondition), String(failed));
    assert.match(String(failed), new RegExp(`blob ${layer}`));
    assert.ok(!(await w.store.list()).some((i) => i.digest === layer), "no blob of the bad layer");
    assert.deepEqual(await w.store.listStatuses(), [], "no ingest of it either");
    assert.deepEqual(w.md.images.list(NS), []);

    const r = await pullImage(w.backend, `${good.host}/busybox:t`, {
      plainHttp: true,
      username: creds.user,
      password: creds.password,
    });
    assert.equal(r.image.target.digest, index.digest);
    assert.ok(
      good.seen.tokenRequests.some((q) =>
        q.includes("service=fake-registry") && q.includes("scope=repository%3Abusybox%3Apull")
      ),
      JSON.stringify(good.seen.tokenRequests),
    );
  } finally {
    await good.close();
    await bad.close();
    await w.close();
  }
});

Deno.test("images: the daemon serves the Diff service over ttrpc (diff a snapshot into a blob, apply it to another)", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-images-daemon-" });
  const logs: string[] = [];
  setLogSink((l) => logs.push(l)); // the daemon's start-up lines are not this test's output
  const { config } = parseConfig("version = 2\n");
  const d = await startDaemon(
    applyOverrides(config, {
      root: `${tmp}/root`,
      state: `${tmp}/state`,
      address: `${tmp}/state/b.sock`,
    }),
    {
      plugins: [
        exchangePlugin,
        contentPlugin,
        overlayfsPlugin,
        metadataPlugin,
        snapshotsPlugin,
        contentServicePlugin,
        diffPlugin,
      ] as Registration[],
    },
  );
  const client = await connect(d.ttrpcAddress);
  try {
    const defaults = { metadata: { [NAMESPACE_METADATA_KEY]: "images-test" } };
    const snaps = serviceClient(client, Snapshots, { defaults });
    const diff = serviceClient(client, Diff, { defaults });
    const content = serviceClient(client, Content, { defaults });
    const { mounts: upper } = await snaps.prepare({ snapshotter: "overlayfs", key: "a" });
    await Deno.writeTextFile(`${upper[0].source}/hello`, "over the wire\n");
    const made = await diff.diff({ left: [], right: upper });
    assert.equal(made.diff?.mediaType, "application/vnd.oci.image.layer.v1.tar+gzip");
    const info = await content.info({ digest: made.diff!.digest });
    assert.equal(info.info?.size, made.diff!.size);
    const diffId = info.info!.labels["containerd.io/uncompressed"];

    const { mounts: target } = await snaps.prepare({ snapshotter: "overlayfs", key: "b" });
    const applied = await diff.apply({ diff: made.diff, mounts: target });
    assert.equal(applied.applied?.digest, diffId);
    assert.equal(await Deno.readTextFile(`${target[0].source}/hello`), "over the wire\n");
  } finally {
    client.close();
    await d.stop();
    setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l)));
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("images: a deletion in an upper layer (umoci repack) unpacks as an overlay whiteout, or a real deletion in native", async () => {
  const w = await openWorld();
  try {
    const layout = `${w.dir}/layout`;
    const image = `${layout}:del`;
    // Both layers by unpack/repack: umoci repack writes deletions as whiteouts.
    const bundle = `${w.dir}/bundle`;
    await must("umoci", ["init", "--layout", layout]);
    await must("umoci", ["new", "--image", image]);
    await must("umoci", ["unpack", "--image", image, bundle]);
    await Deno.mkdir(`${bundle}/rootfs/etc/keep`, { recursive: true });
    await Deno.writeTextFile(`${bundle}/rootfs/etc/gone`, "to be deleted\n");
    await Deno.writeTextFile(`${bundle}/rootfs/etc/keep/file`, "stays\n");
    await must("umoci", ["repack", "--image", image, bundle]);
    await Deno.remove(bundle, { recursive: true });
    await must("umoci", ["unpack", "--image", image, bundle]);
    await Deno.remove(`${bundle}/rootfs/etc/gone`);
    await Deno.writeTextFile(`${bundle}/rootfs/etc/keep/new`, "added\n");
    await must("umoci", ["repack", "--image", image, bundle]);
    const indexPath = `${layout}/index.json`;
    const idx = JSON.parse(await Deno.readTextFile(indexPath));
    idx.manifests = idx.manifests.filter((m: { annotations?: Record<string, string> }) =>
      m.annotations?.["org.opencontainers.image.ref.name"] === "del"
    );
    idx.manifests[0].annotations = { "org.opencontainers.image.ref.name": "berth.test/del:1" };
    await Deno.writeTextFile(indexPath, JSON.stringify(idx));
    const archive = `${w.dir}/del.tar`;
    await must("tar", ["-cf", archive, "-C", layout, "."]);

    for (const snapshotter of ["overlayfs", "native"]) {
      const r = await importArchive(w.backend, await fileStream(archive), { snapshotter });
      const u = r.unpacked["berth.test/del:1"];
      assert.equal(u.layers, 2);
      const sn = w.backend.snapshots(snapshotter);
      const mounts = await sn.prepare(`look-${snapshotter}`, u.chainId);
      if (snapshotter === "native") {
        const root = mounts[0].source;
        await assert.rejects(Deno.lstat(`${root}/etc/gone`), Deno.errors.NotFound);
        assert.equal(await Deno.readTextFile(`${root}/etc/keep/file`), "stays\n");
        assert.equal(await Deno.readTextFile(`${root}/etc/keep/new`), "added\n");
      } else {
        // The top layer's own directory holds the whiteout: a 0/0 character device.
        const top = topLayerDir(mounts);
        const wh = await Deno.lstat(`${top}/etc/gone`);
        assert.ok(wh.isCharDevice, "overlay whiteout for the deleted file");
        assert.equal(wh.rdev, 0);
        assert.equal(await Deno.readTextFile(`${top}/etc/keep/new`), "added\n");
      }
      await sn.remove(`look-${snapshotter}`);
    }
  } finally {
    await w.close();
  }
});

Deno.test("images: a pull whose layer download breaks midway resumes with a Range request and succeeds", async () => {
  const w = await openWorld();
  const layout = await buildBusyboxLayout(w.dir);
  const index = JSON.parse(await Deno.readTextFile(`${layout}/index.json`)).manifests[0];
  const manifest = JSON.parse(
    await Deno.readTextFile(`${layout}/blobs/sha256/${index.digest.slice(7)}`),
  );
  const layer = manifest.layers[0];
  const creds = { user: "u", password: "p" };
  const reg = fakeRegistry(layout, { ...creds, dropOnce: layer.digest });
  try {
    const events: PullProgress[] = [];
    const r = await pullImage(w.backend, `${reg.host}/busybox:t`, {
      plainHttp: true,
      username: creds.user,
      password: creds.password,
      onProgress: (p) => events.push(p),
    });
    assert.equal(r.fetched, 2);
    const half = layer.size >> 1;
    assert.deepEqual(
      reg.seen.ranges,
      [`bytes=${half}-`],
      "the second attempt asked for the rest only",
    );
    const starts = events.filter((e) => e.digest === layer.digest && e.resumedAt !== undefined);
    assert.deepEqual(starts.map((e) => e.resumedAt), [0, half]);
    assert.equal(w.md.content.info(NS, layer.digest).size, layer.size);
  } finally {
    await reg.close();
    await w.close();
  }
});
