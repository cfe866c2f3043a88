// Images end to end over berth's local stores: archives written by umoci,
// skopeo and berth itself, an export that Debian's containerd imports and
// runs, pulls from a real registry (plain and with basic auth), a corrupt
// blob refused, concurrent imports, and garbage collection afterwards.

import assert from "node:assert/strict";
import { ContentStore } from "../src/content/mod.ts";
import { Code, isCode } from "../src/errdefs/mod.ts";
import { GarbageCollector } from "../src/gc/mod.ts";
import {
  chainIds,
  exportArchive,
  importArchive,
  importDirectory,
  type ImageBackend,
  localBackend,
  readJson,
  resolveManifest,
} from "../src/images/mod.ts";
import { type Metadata, openMetadata } from "../src/metadata/mod.ts";
import { NamespacedContent } from "../src/services/content/namespaced.ts";
import { NativeSnapshotter, OverlaySnapshotter, type Snapshotter } from "../src/snapshots/mod.ts";
import { makeBusyboxRootfs } from "./support/bundle.ts";
import { startContainerd } from "./support/containerd.ts";
import { BUSYBOX_REF, buildBusyboxImage } from "./support/image.ts";
import { runTool } from "./support/tool.ts";

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
  const overlay: Snapshotter = await OverlaySnapshotter.open(`${dir}/root/io.containerd.snapshotter.v1.overlayfs`);
  const native: Snapshotter = await NativeSnapshotter.open(`${dir}/root/io.containerd.snapshotter.v1.native`);
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
    const cfg = await readJson<{ rootfs: { diff_ids: string[] } }>(w.backend.content, manifest.config.digest);
    const top = chainIds(cfg.rootfs.diff_ids).at(-1)!;
    assert.equal(r.unpacked[BUSYBOX_REF].chainId, top);
    const info = await w.md.snapshotter(w.overlay).stat(NS, top);
    assert.equal(info.kind, "committed");
    // The layer's files are in the snapshot.
    const mounts = await w.backend.snapshots().prepare("check", top);
    const lower = mounts[0].type === "bind" ? mounts[0].source : "";
    assert.ok((await Deno.lstat(`${lower}/bin/busybox`)).isFile, JSON.stringify(mounts));
    await w.backend.snapshots().remove("check");
    // GC labels as containerd sets them.
    const mrec = w.md.content.info(NS, r.images[0].target.digest);
    assert.equal(mrec.labels["containerd.io/gc.ref.content.config"], manifest.config.digest);
    assert.equal(mrec.labels["containerd.io/gc.ref.content.l.0"], manifest.layers[0].digest);
    assert.equal(
      w.md.content.info(NS, manifest.config.digest).labels["containerd.io/gc.ref.snapshot.overlayfs"],
      top,
    );
    assert.equal(
      w.md.content.info(NS, manifest.layers[0].digest).labels["containerd.io/uncompressed"],
      cfg.rootfs.diff_ids[0],
    );
    // Again: nothing new is written or applied.
    const again = await importArchive(w.backend, await fileStream(img.archive));
    assert.equal(again.written, 0);
    assert.equal(again.unpacked[BUSYBOX_REF].applied, 0);
    assert.equal(w.md.leases.list(NS).length, 0, "the import's lease is gone");
  } finally {
    await w.close();
  }
});
