import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { makeBundle } from "../../tests/support/bundle.ts";
import { runcCreate, runcDelete, runcKill, runcPs, runcStart, runcState } from "./mod.ts";

async function withBundle(
  args: string[],
  fn: (dir: string, root: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-runc-" });
  try {
    await makeBundle(dir, { args });
    await fn(dir, `${dir}/state`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("runc driver: create, state, start, output through inherited pipes, exit", async () => {
  await withBundle(["sh", "-c", "echo out; echo err >&2; exit 3"], async (dir, root) => {
    const cfg = { binary: "runc", root, log: `${dir}/log.json` };
    const id = `t${crypto.randomUUID().slice(0, 8)}`;
    const created = await runcCreate(cfg, id, dir, {
      pidFile: `${dir}/init.pid`,
      stdout: "piped",
      stderr: "piped",
    });
    try {
      assert.ok(created.pid > 0);
      assert.equal((await runcState(cfg, id)).status, "created");
      const out = new Response(created.child.stdout).text();
      const err = new Response(created.child.stderr).text();
      await runcStart(cfg, id);
      assert.equal(await out, "out\n");
      assert.equal(await err, "err\n");
      // The test process is not a subreaper, so the init reparents to pid 1; wait for runc to see it stop.
      for (let i = 0; i < 100 && (await runcState(cfg, id)).status !== "stopped"; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.equal((await runcState(cfg, id)).status, "stopped");
    } finally {
      await runcDelete(cfg, id, true);
    }
  });
});

Deno.test("runc driver: kill and ps on a running container", async () => {
  await withBundle(["sleep", "30"], async (dir, root) => {
    const cfg = { binary: "runc", root, log: `${dir}/log.json` };
    const id = `t${crypto.randomUUID().slice(0, 8)}`;
    await runcCreate(cfg, id, dir, { pidFile: `${dir}/init.pid` });
    try {
      await runcStart(cfg, id);
      const pids = await runcPs(cfg, id);
      assert.equal(pids.length, 1);
      await runcKill(cfg, id, 9);
      for (let i = 0; i < 100 && (await runcState(cfg, id)).status !== "stopped"; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await runcDelete(cfg, id, true);
    }
  });
});

Deno.test("runc driver: errors carry the runtime's own message and the right code", async () => {
  await withBundle(["/no/such/binary"], async (dir, root) => {
    const cfg = { binary: "runc", root, log: `${dir}/log.json` };
    await assert.rejects(runcState(cfg, "missing"), (e) => isCode(e, Code.NotFound));
    await assert.rejects(
      runcCreate(cfg, "bad", dir, { pidFile: `${dir}/init.pid` }).then(() => runcStart(cfg, "bad")),
      /no such file or directory|not found/,
    );
    await runcDelete(cfg, "bad", true);
    await runcDelete(cfg, "never-existed", true);
  });
});
