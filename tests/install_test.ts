/**
 * `make install` and `make uninstall`: the staged layout under DESTDIR
 * (paths in the files are PREFIX's, never DESTDIR's or the clone's), a
 * config written only when absent, and an installed berth that works with
 * nothing of the clone on its PATH: --version, `config default`, a daemon
 * and `run --rm`. The unit is checked with `systemd-analyze verify`.
 *
 * Needs `make build` first (bin/berth); make runs it again if sources changed.
 */
import assert from "node:assert/strict";
import { spawnDaemon, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { makeRootDir } from "./support/berth.ts";
import { runTool, type ToolResult } from "./support/tool.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
/** A PATH with nothing of the clone on it. */
const SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

function ok(r: ToolResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

const make = (target: string, vars: Record<string, string>) =>
  runTool(
    "make",
    ["-s", "-C", ROOT, target, ...Object.entries(vars).map(([k, v]) => `${k}=${v}`)],
    {
      timeoutMs: 300_000,
    },
  );

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

Deno.test("make install into DESTDIR: PREFIX's paths, config only when absent; uninstall", async () => {
  const stage = await Deno.makeTempDir({ prefix: "berth-install-stage-" });
  try {
    ok(await make("install", { DESTDIR: stage }), "make install");
    const p = `${stage}/usr/local`;
    const berth = await Deno.readTextFile(`${p}/bin/berth`);
    const shebang = berth.slice(0, berth.indexOf("\n"));
    if (shebang.startsWith("#!")) {
      assert.match(shebang, /^#!\/usr\/bin\/env -S \/usr\/local\/lib\/berth\/deno run /);
      const deno = ok(await runTool(`${p}/lib/berth/deno`, ["--version"]), "installed deno");
      const pinned = (await Deno.readTextFile(`${ROOT}/Makefile`)).match(
        /^DENO_VERSION := (\S+)/m,
      )![1];
      assert.match(deno, new RegExp(`^deno ${pinned.replaceAll(".", "\\.")} `));
    }
    assert.ok(!berth.includes(ROOT), "the installed berth names the clone");
    assert.ok(!berth.includes(stage), "the installed berth names DESTDIR");
    assert.equal(await Deno.readLink(`${p}/bin/containerd-shim-berth-v2`), "berth");
    const unit = await Deno.readTextFile(`${p}/lib/systemd/system/berth.service`);
    assert.match(unit, /^ExecStart=\/usr\/local\/bin\/berth daemon /m);
    assert.match(unit, /^Documentation=file:\/usr\/local\/share\/doc\/berth\/README\.md$/m);
    assert.ok(await exists(`${p}/share/doc/berth/README.md`));
    assert.match(
      await Deno.readTextFile(`${p}/share/bash-completion/completions/berth`),
      /complete -F _berth berth/,
    );
    const config = `${stage}/etc/berth/config.toml`;
    const defaults = ok(await runTool(`${ROOT}/bin/berth`, ["config", "default"]), "defaults");
    assert.equal(await Deno.readTextFile(config), defaults);

    // A second install keeps an edited config.
    await Deno.writeTextFile(config, `${defaults}# edited\n`);
    assert.match(ok(await make("install", { DESTDIR: stage }), "reinstall"), /kept the existing/);
    assert.match(await Deno.readTextFile(config), /# edited\n$/);

    const out = ok(await make("uninstall", { DESTDIR: stage }), "make uninstall");
    assert.match(out, /kept .*etc\/berth\/config\.toml/);
    for (
      const f of [
        "bin/berth",
        "bin/containerd-shim-berth-v2",
        "lib/berth",
        "lib/systemd/system/berth.service",
        "share/bash-completion/completions/berth",
        "share/doc/berth",
      ]
    ) assert.ok(!await exists(`${p}/${f}`), `${f} left after uninstall`);
    assert.ok(await exists(config));
  } finally {
    await Deno.remove(stage, { recursive: true });
  }
});

Deno.test("an installed berth runs without the clone: version, config, daemon, run --rm", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-install-" });
  const prefix = `${dir}/prefix`;
  try {
    ok(await make("install", { PREFIX: prefix, SYSCONFDIR: `${dir}/etc` }), "make install");
    const berth = `${prefix}/bin/berth`;
    const env = { PATH: `${prefix}/bin:${SYSTEM_PATH}` };
    const run = (args: string[]) => runTool(berth, args, { env, cwd: dir, timeoutMs: 60_000 });
    assert.match(ok(await run(["--version"]), "--version"), /^berth /);
    assert.match(ok(await run(["config", "default"]), "config default"), /^version = 2\n/);

    // The unit, with paths that exist here.
    const analyze = await runTool("systemd-analyze", [
      "verify",
      `${prefix}/lib/systemd/system/berth.service`,
    ]);
    if (analyze.code === 127) console.log("systemd-analyze is not installed: unit not verified");
    else ok(analyze, "systemd-analyze verify");

    const address = `${dir}/berth.sock`;
    const d = spawnDaemon(
      ["--root", `${dir}/root`, "--state", `${dir}/state`, "--address", address],
      berth,
      env,
    );
    try {
      await waitForSocket(`${address}.ttrpc`, d);
      const root = await makeRootDir(dir);
      const b = (args: string[]) => run(["--address", address, ...args]);
      ok(await b(["images", "import", "--from-dir", root, "inst:1"]), "import");
      const out = ok(
        await b(["run", "--rm", "docker.io/library/inst:1", `inst${Date.now()}`, "echo", "hi"]),
        "run --rm",
      );
      assert.equal(out, "hi\n");
    } finally {
      await stopDaemon(d);
    }
    ok(await make("uninstall", { PREFIX: prefix, SYSCONFDIR: `${dir}/etc` }), "make uninstall");
    assert.ok(!await exists(berth));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
