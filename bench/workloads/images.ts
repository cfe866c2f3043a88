/**
 * Workload 5: import and unpack of a generated multi-layer image archive,
 * and pull of the same image from a loopback registry. Between rounds the
 * image is removed with `images rm --sync` (content and snapshots collected),
 * so every round unpacks from scratch.
 * @module
 */

import type { BenchContext, Workload } from "../context.ts";
import { figure } from "../figures.ts";
import { interleave, Unavailable } from "../interleave.ts";
import type { Engine } from "../engines.ts";
import { buildLargeImage } from "../../tests/support/image.ts";
import { type Registry, startRegistry } from "../registry.ts";
import { check } from "./run.ts";

/** Removes `ref` and everything only it used; fails when it is still listed. */
async function removeImage(e: Engine, ref: string): Promise<void> {
  check(
    "images rm --sync",
    await e.client(["images", "rm", "--sync", ref], { timeoutMs: 300_000 }),
  );
  const ls = check("images ls -q", await e.client(["images", "ls", "-q"]));
  if (ls.stdout.split("\n").includes(ref)) {
    throw new Unavailable(`${ref} still listed after images rm`);
  }
}

async function timed(e: Engine, args: string[], ref: string): Promise<number> {
  const r = check(args.slice(0, 2).join(" "), await e.client(args, { timeoutMs: 900_000 }));
  await removeImage(e, ref);
  return r.ms;
}

/** Workload 5: import+unpack and pull. */
export const images: Workload = {
  id: 5,
  name: "image import and pull",
  async run(ctx: BenchContext) {
    const { importMB, importLayers, importRounds: rounds } = ctx.params;
    ctx.progress(`5. building a ${importMB} MiB image in ${importLayers} layers`);
    const img = await buildLargeImage(ctx.tmp, importMB, importLayers);
    const sizeMiB = (img.bytes / 1048576).toFixed(0);

    ctx.progress(`5. images import x${rounds}`);
    const imp = await interleave(rounds, [
      {
        name: "berth",
        unavailable: ctx.berth.unavailable,
        once: () => timed(ctx.berth, ["images", "import", img.archive], img.ref),
      },
      {
        name: "containerd",
        once: () => timed(ctx.containerd, ["images", "import", img.archive], img.ref),
      },
    ], ctx.progress);

    let registry: Registry | null = null;
    let pullRef = "";
    let registryFailure: string | null = null;
    try {
      ctx.progress("5. loopback registry and skopeo push");
      registry = await startRegistry();
      ctx.defer(registry.stop, registry.dir);
      pullRef = await registry.push(img.archive, `berth-bench/large:${importMB}mb`);
    } catch (err) {
      registryFailure = `registry: ${(err as Error).message}`;
    }
    ctx.progress(`5. images pull x${rounds}`);
    const pull = await interleave(rounds, [
      {
        name: "berth",
        unavailable: registryFailure ?? ctx.berth.unavailable,
        once: () => timed(ctx.berth, ["images", "pull", "--plain-http", pullRef], pullRef),
      },
      {
        name: "containerd",
        unavailable: registryFailure,
        once: () => timed(ctx.containerd, ["images", "pull", "--plain-http", pullRef], pullRef),
      },
    ], ctx.progress);
    await registry?.stop();
    await Deno.remove(img.archive).catch(() => {});

    const common = {
      unit: "ms",
      better: "lower" as const,
      target: { op: "<=" as const, value: 1.0 },
    };
    return [
      figure({
        ...common,
        workload: `5a. import+unpack ${sizeMiB} MiB, ${img.layers} layers`,
        metric: "wall time",
        berthLabel: "berth images import",
        containerdLabel: "ctr images import",
        berth: imp.berth,
        containerd: imp.containerd,
      }),
      figure({
        ...common,
        workload: `5b. pull ${sizeMiB} MiB from loopback registry`,
        metric: "wall time",
        berthLabel: "berth images pull",
        containerdLabel: "ctr images pull",
        berth: pull.berth,
        containerd: pull.containerd,
      }),
    ];
  },
};
