/**
 * The floor for `run --rm`: `runc run` of a busybox bundle running `true`
 * without a terminal, with its own --root, so no daemon or shim is involved.
 * Nothing any runtime built on runc does can be faster than this.
 * @module
 */

import { makeBundle } from "../tests/support/bundle.ts";
import { removeCgroup } from "../tests/support/mounts.ts";
import { runTool } from "../tests/support/tool.ts";

/** A prepared runc bundle and root. */
export interface RuncFloor {
  /** The temporary directory holding the bundle and the runc root. */
  dir: string;
  /** Runs the bundle to completion once as container `id`; returns wall ms. */
  runOnce(id: string): Promise<number>;
  stop(): Promise<void>;
}

/** Makes the bundle (busybox rootfs + `runc spec` config running `true`) in a temp dir. */
export async function prepareRuncFloor(): Promise<RuncFloor> {
  const dir = await Deno.makeTempDir({ prefix: "berth-bench-runc-" });
  const bundle = `${dir}/bundle`;
  const root = `${dir}/runc-root`;
  const cgroupParent = `berth-bench-runc-${dir.slice(-6)}`;
  await makeBundle(bundle, { args: ["true"] });
  // Keep this bundle's cgroups under one parent, so stop() can remove them all.
  const spec = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
  spec.linux.cgroupsPath = `/${cgroupParent}/floor`;
  await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec, null, 2));

  const runOnce = async (id: string) => {
    const r = await runTool("runc", ["--root", root, "run", "--bundle", bundle, id], {
      timeoutMs: 60_000,
    });
    if (r.code !== 0) throw new Error(`runc run: ${r.stderr.trim() || `exit ${r.code}`}`);
    return r.ms;
  };

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      for (const e of safeReadDir(root)) {
        await runTool("runc", ["--root", root, "delete", "--force", e], { timeoutMs: 20_000 });
      }
      removeCgroup(`/${cgroupParent}`);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
    return stopping;
  };
  return { dir, runOnce, stop };
}

function safeReadDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name);
  } catch {
    return [];
  }
}
