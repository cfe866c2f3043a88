/**
 * OCI hooks end to end: bin/berth's `run --hook` puts hooks into the spec,
 * real runc runs them at their stages, and `berth oci-hook` renders
 * containerd's templates for them. Needs `make build` first (bin/berth).
 */
import assert from "node:assert/strict";
import { privateBerth } from "./support/binary.ts";
import { spawnDaemon, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { mountsUnder } from "./support/mounts.ts";
import { processesMentioning } from "./support/proc.ts";
import { runTool, type ToolResult } from "./support/tool.ts";

const bin = await privateBerth();
globalThis.addEventListener("unload", () => bin.remove());
const BERTH = bin.path;

function ok(r: ToolResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

Deno.test("hooks: runc runs --hook hooks at their stages; oci-hook renders the templates; a failing prestart leaves nothing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-hooks-test-" });
  const address = `${dir}/berth.sock`;
  const ns = `hk${crypto.randomUUID().slice(0, 8)}`;
  const d = spawnDaemon(
    ["--root", `${dir}/root`, "--state", `${dir}/state`, "--address", address],
    BERTH,
  );
  const b = (args: string[]) => runTool(BERTH, ["-a", address, "-n", ns, ...args]);
  let status: Deno.CommandStatus | undefined;
  try {
    await waitForSocket(`${address}.ttrpc`, d);
    const img = `${dir}/img`;
    await Deno.mkdir(`${img}/bin`, { recursive: true });
    await Deno.mkdir(`${img}/mnt`);
    await Deno.copyFile("/bin/busybox", `${img}/bin/busybox`);
    for (const a of ["sh", "cat"]) await Deno.symlink("busybox", `${img}/bin/${a}`);
    ok(await b(["images", "import", "--from-dir", img, "hk:1", "--cmd", "sh"]), "import");
    const out = `${dir}/out`;
    await Deno.mkdir(out);

    // createContainer runs in the container's mount namespace before pivot_root: a tmpfs it
    // mounts on the rootfs is what the container sees, and the host's rootfs never has it.
    const hook = (stage: string, script: string) =>
      `--hook=${stage}=${JSON.stringify([BERTH, "oci-hook", "--", "/bin/sh", "-c", script])}`;
    const id = `c-${ns}`;
    const run = await b([
      "run",
      "--rm",
      "--annotation",
      "org.example/color=teal",
      hook(
        "createContainer",
        "mount -t tmpfs hook {{rootfs}}/mnt && echo set-up-for-{{id}} > {{rootfs}}/mnt/greeting",
      ),
      hook("poststart", `cat > ${out}/poststart-{{id}}-{{pid}}.state`),
      hook("poststop", `echo {{status}} > ${out}/poststop-{{annotation "org.example/color"}}`),
      "docker.io/library/hk:1",
      id,
      "cat",
      "/mnt/greeting",
    ]);
    assert.equal(ok(run, "run with hooks"), `set-up-for-${id}\n`);
    const files = [...Deno.readDirSync(out)].map((e) => e.name).sort();
    assert.equal(files.length, 2, files.join(" "));
    const [post, stop] = files;
    const m = new RegExp(`^poststart-${id}-(\\d+)\\.state$`).exec(post);
    assert.ok(m && Number(m[1]) > 1, `poststart file named from id and pid: ${post}`);
    // oci-hook hands the state on to the command's stdin.
    const state = JSON.parse(await Deno.readTextFile(`${out}/${post}`));
    assert.equal(state.id, id);
    assert.equal(state.pid, Number(m[1]));
    assert.equal(state.annotations["org.example/color"], "teal");
    assert.equal(stop, "poststop-teal");
    assert.equal((await Deno.readTextFile(`${out}/${stop}`)).trim(), "stopped");

    // A failing prestart hook fails the run with the hook's own message, and leaves nothing.
    const bad = `bad-${ns}`;
    const failed = await b([
      "run",
      "--rm",
      "--hook",
      "prestart=/bin/sh:-c:echo network for {{id}} is not ready >&2; exit 7",
      "docker.io/library/hk:1",
      bad,
      "true",
    ]);
    assert.notEqual(failed.code, 0, failed.stdout);
    assert.match(failed.stderr, /exit status 7.*network for \{\{id\}\} is not ready/s);
    assert.doesNotMatch(ok(await b(["tasks", "ls"]), "tasks ls"), new RegExp(bad));
    assert.doesNotMatch(ok(await b(["containers", "ls"]), "containers ls"), new RegExp(bad));
    assert.doesNotMatch(ok(await b(["snapshots", "ls"]), "snapshots ls"), new RegExp(bad));
    assert.deepEqual(mountsUnder(dir), []);
    assert.deepEqual(processesMentioning(bad), []);
    await assert.rejects(Deno.stat(`/run/berth/runc/${ns}/${bad}`), Deno.errors.NotFound);
    await assert.rejects(
      Deno.stat(`${dir}/state/io.containerd.runtime.v2.task/${ns}/${bad}`),
      Deno.errors.NotFound,
    );
  } finally {
    status = await stopDaemon(d);
    await Deno.remove(`/run/berth/runc/${ns}`, { recursive: true }).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(status?.success, `the daemon stops cleanly:\n${d.log()}`);
});
