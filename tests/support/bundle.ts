/**
 * OCI bundles for tests and benchmarks, made without berth: a busybox rootfs
 * from Debian's busybox-static and a config.json from `runc spec`, adjusted.
 * @module
 */

import { runChecked } from "../../src/spawn/mod.ts";

const BUSYBOX = "/bin/busybox";

/** Writes a busybox root filesystem into `rootfs` (applets as symlinks). */
export async function makeBusyboxRootfs(rootfs: string): Promise<void> {
  for (
    const dir of ["bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "tmp", "root"]
  ) {
    await Deno.mkdir(`${rootfs}/${dir}`, { recursive: true });
  }
  await Deno.copyFile(BUSYBOX, `${rootfs}/bin/busybox`);
  await Deno.chmod(`${rootfs}/bin/busybox`, 0o755);
  const list = await runChecked(BUSYBOX, ["--list"]);
  for (const applet of new TextDecoder().decode(list.stdout).split("\n")) {
    if (!applet || applet === "busybox") continue;
    await Deno.symlink("busybox", `${rootfs}/bin/${applet}`).catch(() => {});
  }
  await Deno.writeTextFile(
    `${rootfs}/etc/passwd`,
    "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
  );
  await Deno.writeTextFile(`${rootfs}/etc/group`, "root:x:0:\nnogroup:x:65534:\n");
}

/** Options for {@link makeBundle}. */
export interface BundleOptions {
  /** The process's argv (default: `true`). */
  args?: string[];
  terminal?: boolean;
  /** Set the rootfs in config.json but leave the directory empty (for tests that mount it). */
  emptyRootfs?: boolean;
}

/**
 * Makes an OCI bundle in `dir`: `dir/rootfs` with busybox and `dir/config.json`
 * from `runc spec`, running `args` without a terminal unless asked.
 */
export async function makeBundle(dir: string, opts: BundleOptions = {}): Promise<void> {
  await Deno.mkdir(`${dir}/rootfs`, { recursive: true });
  if (!opts.emptyRootfs) await makeBusyboxRootfs(`${dir}/rootfs`);
  await runChecked("runc", ["spec", "--bundle", dir]);
  const spec = JSON.parse(await Deno.readTextFile(`${dir}/config.json`));
  spec.process.args = opts.args ?? ["true"];
  spec.process.terminal = opts.terminal ?? false;
  spec.root.readonly = false;
  await Deno.writeTextFile(`${dir}/config.json`, JSON.stringify(spec, null, 2));
}
