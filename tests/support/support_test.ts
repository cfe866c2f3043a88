/**
 * The shared test support works against the real thing: containerd starts
 * on temporary paths, the busybox archive imports and runs, and stop()
 * leaves no process, mount, socket, cgroup or directory behind.
 */
import assert from "node:assert/strict";
import { startContainerd } from "./containerd.ts";
import { buildBusyboxImage, buildLargeImage, fillDeterministic } from "./image.ts";
import { isAlive, processesInCgroup, processesMentioning } from "./proc.ts";
import { spawn } from "../../src/spawn/mod.ts";
import { cgroupRoots, mountsUnder } from "./mounts.ts";
import { existsSync } from "../../src/fsutil/mod.ts";

Deno.test("containerd from tests/support runs the busybox image and cleans up after itself", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-support-test-" });
  const runDirBefore = existsSync("/run/containerd");
  const ctd = await startContainerd();
  let stopped = false;
  try {
    const img = await buildBusyboxImage(tmp);
    // A second call in the same process reuses the archive.
    assert.equal((await buildBusyboxImage(tmp)).archive, img.archive);

    const imported = await ctd.ctr(["images", "import", img.archive]);
    assert.equal(imported.code, 0, imported.stderr);
    const ls = await ctd.ctr(["images", "ls", "-q"]);
    assert.ok(ls.stdout.split("\n").includes(img.ref), `images ls: ${ls.stdout}`);

    const r = await ctd.ctr(["run", "--rm", img.ref, "t1", "echo", "hi"]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim(), "hi");

    // Leave a running container behind on purpose: stop() must clean it up too.
    const d = await ctd.ctr(["run", "-d", img.ref, "left-running", "sleep", "600"]);
    assert.equal(d.code, 0, d.stderr);
    const tasks = await ctd.ctr(["tasks", "ls"]);
    const m = tasks.stdout.match(/left-running\s+(\d+)\s+RUNNING/);
    assert.ok(m, `tasks ls: ${tasks.stdout}`);
    const sleepPid = Number(m[1]);
    assert.ok(isAlive(sleepPid));
    assert.ok(processesMentioning(ctd.dir).length > 0, "a shim of this instance should be running");

    await ctd.stop();
    await ctd.stop(); // twice is fine
    stopped = true;

    assert.equal(processesMentioning(ctd.dir).length, 0, "no process of the instance is left");
    assert.equal(processesMentioning(ctd.address).length, 0);
    assert.deepEqual(mountsUnder(ctd.dir), []);
    assert.ok(!existsSync(ctd.dir), `${ctd.dir} removed`);
    assert.ok(
      !existsSync(`/run/containerd/runc/${ctd.namespace}`),
      "runc state of the namespace removed",
    );
    for (const root of cgroupRoots()) {
      assert.ok(!existsSync(`${root}/${ctd.namespace}`), `cgroup ${root}/${ctd.namespace} removed`);
    }
    assert.ok(!isAlive(sleepPid), "the container's process is gone");
    if (!runDirBefore) {
      assert.ok(!existsSync("/run/containerd"), "/run/containerd (shim sockets, fifos) removed");
    }
  } finally {
    if (!stopped) await ctd.stop();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("stop() kills a process in the instance's namespace cgroup even when no runc root names it", async () => {
  const ctd = await startContainerd();
  let child: Deno.ChildProcess | null = null;
  try {
    // A stand-in for a container whose runtime keeps its state somewhere unknown.
    const root = cgroupRoots()[0];
    const cg = `${root}/${ctd.namespace}/stray`;
    await Deno.mkdir(cg, { recursive: true });
    child = spawn("sleep", ["600"], { stdout: "null", stderr: "null" });
    await Deno.writeTextFile(`${cg}/cgroup.procs`, String(child.pid));
    assert.ok(processesInCgroup(`/${ctd.namespace}/`).includes(child.pid));
    await ctd.stop();
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");
    assert.ok(!existsSync(`${root}/${ctd.namespace}`), "the namespace's cgroup removed");
  } finally {
    await ctd.stop();
    if (child) {
      try {
        child.kill("SIGKILL");
      } catch { /* already gone */ }
      await child.status;
    }
  }
});

Deno.test("startContainerd reports a daemon that cannot start, and leaves nothing", async () => {
  await assert.rejects(
    startContainerd({ config: "[this is not toml", startTimeoutMs: 10_000 }),
    /containerd exited during start-up/,
  );
});

Deno.test("fillDeterministic gives the same bytes for a seed and different bytes for another", () => {
  const a = new Uint8Array(1001), b = new Uint8Array(1001), c = new Uint8Array(1001);
  fillDeterministic(a, 7);
  fillDeterministic(b, 7);
  fillDeterministic(c, 8);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
  // Incompressible enough: no long runs of one byte value.
  assert.ok(new Set(a).size > 200);
});

Deno.test("buildLargeImage makes a multi-layer archive of about the asked size", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-large-test-" });
  try {
    const img = await buildLargeImage(tmp, 8, 2);
    assert.equal(img.layers, 3); // busybox base + 2 data layers
    assert.ok(img.bytes > 8 * 1024 * 1024 && img.bytes < 12 * 1024 * 1024, `size ${img.bytes}`);
    assert.throws(() => buildLargeImage(tmp, 0, 2), RangeError);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
