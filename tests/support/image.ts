/**
 * OCI image archives for tests and the benchmark, made without berth: root
 * filesystems written here, turned into an OCI image layout by umoci, and
 * packed with tar. The archive's index names the manifest with a full
 * reference (org.opencontainers.image.ref.name), so `ctr images import`
 * names the image after it with no --base-name.
 *
 * @example
 * ```ts
 * const img = await buildBusyboxImage(tmp);
 * await ctd.ctr(["images", "import", img.archive]);
 * await ctd.ctr(["run", "--rm", img.ref, "c1", "echo", "hi"]);
 * ```
 * @module
 */

import { makeBusyboxRootfs } from "./bundle.ts";
import { runTool } from "./tool.ts";

/** An image archive made by this module. */
export interface TestImage {
  /** Path to a tar of an OCI image layout. */
  archive: string;
  /** The full reference the archive's index names its manifest with. */
  ref: string;
  /** Total size of the archive in bytes. */
  bytes: number;
  /** How many layers the manifest lists. */
  layers: number;
}

/** The reference the busybox test image is imported as. */
export const BUSYBOX_REF = "docker.io/library/busybox:berth";

const ENV_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** A fixed timestamp for every file, so equal content gives equal layer digests. */
const FIXED_TIME = new Date("2024-01-01T00:00:00Z");

async function must(cmd: string, args: string[]): Promise<void> {
  const r = await runTool(cmd, args, { timeoutMs: 600_000 });
  if (r.code !== 0) {
    throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr.trim()}`);
  }
}

async function touchTree(dir: string): Promise<void> {
  for await (const e of Deno.readDir(dir)) {
    const p = `${dir}/${e.name}`;
    if (e.isDirectory) await touchTree(p);
    if (!e.isSymlink) await Deno.utime(p, FIXED_TIME, FIXED_TIME);
  }
  await Deno.utime(dir, FIXED_TIME, FIXED_TIME);
}

/** The layers and settings of an image to build. */
interface ImageSpec {
  ref: string;
  /** Directories whose contents become one layer each, bottom first. */
  layerDirs: string[];
  cmd: string[];
}

/**
 * Builds an OCI layout from `spec` in `work` with umoci, names its manifest
 * with the full reference, and tars it to `archive`.
 */
async function packImage(work: string, archive: string, spec: ImageSpec): Promise<TestImage> {
  const layout = `${work}/layout`;
  const image = `${layout}:build`;
  await Deno.remove(layout, { recursive: true }).catch(() => {});
  await must("umoci", ["init", "--layout", layout]);
  await must("umoci", ["new", "--image", image]);
  for (const dir of spec.layerDirs) {
    await touchTree(dir);
    await must("umoci", ["insert", "--image", image, dir, "/"]);
  }
  const cmdArgs = spec.cmd.flatMap((c) => ["--config.cmd", c]);
  await must("umoci", [
    "config",
    "--image",
    image,
    "--config.env",
    ENV_PATH,
    "--config.workingdir",
    "/",
    "--author",
    "berth tests",
    ...cmdArgs,
  ]);
  await must("umoci", ["gc", "--layout", layout]);

  // umoci tags take no registry host; write the full reference ourselves.
  const indexPath = `${layout}/index.json`;
  const index = JSON.parse(await Deno.readTextFile(indexPath));
  if (!Array.isArray(index.manifests) || index.manifests.length !== 1) {
    throw new Error(`expected one manifest in ${indexPath}, found ${index.manifests?.length}`);
  }
  index.manifests[0].annotations = { "org.opencontainers.image.ref.name": spec.ref };
  await Deno.writeTextFile(indexPath, JSON.stringify(index));

  await must("tar", ["-cf", archive, "-C", layout, "."]);
  await Deno.remove(layout, { recursive: true });
  const bytes = (await Deno.stat(archive)).size;
  return { archive, ref: spec.ref, bytes, layers: spec.layerDirs.length };
}

const cache = new Map<string, TestImage>();

async function cached(key: string, build: () => Promise<TestImage>): Promise<TestImage> {
  const hit = cache.get(key);
  if (hit) {
    try {
      await Deno.stat(hit.archive);
      return hit;
    } catch {
      // Its directory was removed by whoever made it; build again.
    }
  }
  const img = await build();
  cache.set(key, img);
  return img;
}

/**
 * A one-layer busybox image (Debian's busybox-static with every applet as a
 * symlink, Cmd ["sh"]) as an OCI archive in `dir`, named {@link BUSYBOX_REF}.
 * Built once per process while its archive still exists.
 */
export function buildBusyboxImage(dir: string): Promise<TestImage> {
  return cached("busybox", async () => {
    const work = await Deno.makeTempDir({ dir, prefix: "busybox-build-" });
    try {
      await makeBusyboxRootfs(`${work}/rootfs`);
      return await packImage(work, `${dir}/busybox.tar`, {
        ref: BUSYBOX_REF,
        layerDirs: [`${work}/rootfs`],
        cmd: ["sh"],
      });
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  });
}

/** The reference the pause (pod sandbox) test image is imported as. */
export const PAUSE_REF = "registry.k8s.io/pause:berth";

/**
 * A pod sandbox image for CRI tests: the busybox rootfs whose Cmd sleeps
 * for ever (what a pause container does), named {@link PAUSE_REF}.
 */
export function buildPauseImage(dir: string): Promise<TestImage> {
  return cached("pause", async () => {
    const work = await Deno.makeTempDir({ dir, prefix: "pause-build-" });
    try {
      await makeBusyboxRootfs(`${work}/rootfs`);
      return await packImage(work, `${dir}/pause.tar`, {
        ref: PAUSE_REF,
        layerDirs: [`${work}/rootfs`],
        cmd: ["sleep", "2147483647"],
      });
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  });
}

/**
 * Fills `buf` with bytes from a xorshift32 generator seeded with `seed`:
 * incompressible for gzip, and the same on every run.
 */
export function fillDeterministic(buf: Uint8Array, seed: number): void {
  const words = new Uint32Array(buf.buffer, buf.byteOffset, Math.floor(buf.byteLength / 4));
  let x = (seed >>> 0) || 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  for (let i = words.length * 4; i < buf.byteLength; i++) buf[i] = (seed + i) & 0xff;
}

/** The reference {@link buildLargeImage} names its image with. */
export function largeImageRef(totalMB: number, layers: number): string {
  return `docker.io/library/berth-large:${totalMB}mb-${layers}l`;
}

/**
 * A multi-layer image of about `totalMB` MiB of incompressible, seeded data
 * spread evenly over `layers` layers (gzip-compressed by umoci), on top of
 * the busybox layer, as an OCI archive in `dir`. The same arguments give the
 * same layer contents on every run, so runs are comparable.
 */
export function buildLargeImage(dir: string, totalMB: number, layers: number): Promise<TestImage> {
  if (!(totalMB > 0) || !(layers >= 1) || !Number.isInteger(layers)) {
    throw new RangeError(
      `buildLargeImage: need totalMB > 0 and an integer layers >= 1, got ${totalMB}, ${layers}`,
    );
  }
  return cached(`large-${totalMB}-${layers}`, async () => {
    const work = await Deno.makeTempDir({ dir, prefix: "large-build-" });
    try {
      await makeBusyboxRootfs(`${work}/base`);
      const layerDirs = [`${work}/base`];
      const perLayer = Math.round((totalMB * 1024 * 1024) / layers);
      const fileSize = 4 * 1024 * 1024;
      const buf = new Uint8Array(fileSize);
      for (let l = 0; l < layers; l++) {
        const ldir = `${work}/layer${l}/data/layer${l}`;
        await Deno.mkdir(ldir, { recursive: true });
        for (let f = 0, left = perLayer; left > 0; f++, left -= fileSize) {
          const chunk = buf.subarray(0, Math.min(fileSize, left));
          fillDeterministic(chunk, (l + 1) * 100_003 + f);
          await Deno.writeFile(`${ldir}/blob${String(f).padStart(4, "0")}.bin`, chunk);
        }
        layerDirs.push(`${work}/layer${l}`);
      }
      return await packImage(work, `${dir}/large-${totalMB}mb-${layers}l.tar`, {
        ref: largeImageRef(totalMB, layers),
        layerDirs,
        cmd: ["sh"],
      });
    } finally {
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  });
}

/** The busybox image as an OCI layout directory `${dir}/layout` (for skopeo to push). */
export async function buildBusyboxLayout(dir: string): Promise<string> {
  const img = await buildBusyboxImage(dir);
  const layout = `${dir}/layout`;
  await Deno.mkdir(layout);
  await must("tar", ["-xf", img.archive, "-C", layout]);
  return layout;
}
