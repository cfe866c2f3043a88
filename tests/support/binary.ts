/**
 * A private copy of the built bin/berth for a test file, so that a rebuild
 * of the shared tree while the tests run cannot pull the executable from
 * under them. The shim's name sits beside it, as the daemon looks there.
 */

const BUILT = new URL("../../bin/berth", import.meta.url).pathname;

/** Copies bin/berth into a temporary directory; `remove` deletes that directory. */
export async function privateBerth(): Promise<{ path: string; dir: string; remove(): void }> {
  await Deno.stat(BUILT).catch(() => {
    throw new Error(`${BUILT} is missing: run \`make build\` first`);
  });
  const dir = await Deno.makeTempDir({ prefix: "berth-bin-" });
  await Deno.copyFile(BUILT, `${dir}/berth`);
  await Deno.chmod(`${dir}/berth`, 0o755);
  await Deno.symlink("berth", `${dir}/containerd-shim-berth-v2`);
  return { path: `${dir}/berth`, dir, remove: () => Deno.removeSync(dir, { recursive: true }) };
}
