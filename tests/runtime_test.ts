/**
 * The daemon's runtime v2 manager and Tasks service end to end: a `berth
 * daemon` process on temporary paths, containers whose rootfs is a
 * snapshot made here through the Snapshots service (busybox), tasks run by
 * Debian's containerd-shim-runc-v2 and by berth's own shim, a daemon killed
 * with SIGKILL and restarted, a shim killed with SIGKILL, and bad input.
 * Every test removes what it started: processes by pid, mounts, sockets,
 * runc state and its temporary directory.
 */
import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code } from "../src/errdefs/mod.ts";
import { decodeEvent } from "../src/events/mod.ts";
import { TaskExitSchema } from "../src/gen/containerd/events/task_pb.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Events } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import { Tasks } from "../src/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Status } from "../src/gen/containerd/types/task_pb.ts";
import { serviceClient } from "../src/ttrpc/mod.ts";
import { buildBusyboxImage } from "./support/image.ts";
import { mountsUnder } from "./support/mounts.ts";
import { isAlive, killNow } from "./support/proc.ts";
import {
  berthShimBuilt,
  client,
  exitEvents,
  killAndDelete,
  rejectsWith,
  RUNC_SHIM_ROOT,
  sharedShims,
  shimPidOf,
  sleep,
  SPEC_URL,
  startExec,
  TASK_STATE,
  waitUntil,
  withWorld,
  World,
} from "./support/world.ts";

/** The lifecycle the Tasks API promises, on `runtime`. */
async function lifecycle(w: World, runtime: string): Promise<void> {
  const tasks = w.tasks;
  // Every task event of c1, to prove each arrives once (from the shim; the
  // daemon adds none of its own).
  const c1 = `${w.ns}-one`;
  const abort = new AbortController();
  const seen: string[] = [];
  let sawDelete: () => void = () => {};
  const deleted = new Promise<void>((r) => sawDelete = r);
  const events = serviceClient(w.client!, Events).subscribe({
    filters: [`topic~="^/tasks/",namespace==${w.ns}`],
  }, { signal: abort.signal });
  const recording = (async () => {
    try {
      for await (const env of events) {
        const ev = decodeEvent(env.event) as unknown as { containerId?: string } | undefined;
        if (ev?.containerId !== c1) continue;
        seen.push(env.topic);
        if (env.topic === "/tasks/delete") sawDelete();
      }
    } catch { /* aborted */ }
  })();
  await tasks.list({}); // the subscription is in place once a later call returns
  await w.makeContainer(c1, ["sh", "-c", "echo hello from $(hostname); exit 3"], runtime);
  const out1 = w.fifoReader("c1-out");
  w.step = "create c1";
  const created = await tasks.create({ containerId: c1, stdout: out1.path, stderr: out1.path });
  assert.ok(created.pid > 0);
  await w.rememberShim(c1);
  assert.equal((await tasks.get({ containerId: c1 })).process?.status, Status.CREATED);
  const waiting = tasks.wait({ containerId: c1 });
  waiting.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
  w.step = "start c1";
  await tasks.start({ containerId: c1 });
  w.step = "read c1 output";
  assert.equal(await out1.until("\n"), `hello from ${c1}\n`);
  w.step = "wait c1";
  assert.equal((await waiting).exitStatus, 3);
  w.step = "delete c1";
  const del1 = await tasks.delete({ containerId: c1 });
  assert.equal(del1.exitStatus, 3);
  await assert.rejects(Deno.stat(`${w.bundles}/${c1}`), Deno.errors.NotFound, "bundle removed");
  await rejectsWith(tasks.start({ containerId: c1 }), Code.NotFound);
  w.step = "c1 events";
  await deleted;
  await sleep(200); // room for a duplicate to show up
  abort.abort();
  await recording;
  assert.deepEqual(seen, ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);

  // A long task with an exec, killed and deleted.
  const c2 = `${w.ns}-two`;
  await w.makeContainer(c2, ["sleep", "1000"], runtime);
  w.step = "create c2";
  const { pid } = await tasks.create({ containerId: c2 });
  await w.rememberShim(c2);
  await tasks.start({ containerId: c2 });
  const got = (await tasks.get({ containerId: c2 })).process!;
  assert.equal(got.pid, pid);
  assert.equal(got.status, Status.RUNNING);
  const listed = (await tasks.list({})).tasks.map((t) => [t.id, t.pid]);
  assert.deepEqual(listed, [[c2, pid]]);
  assert.ok((await tasks.listPids({ containerId: c2 })).processes.some((p) => p.pid === pid));

  w.step = "pause, resume, metrics, checkpoint";
  await tasks.pause({ containerId: c2 });
  assert.equal((await tasks.get({ containerId: c2 })).process?.status, Status.PAUSED);
  await tasks.resume({ containerId: c2 });
  assert.equal((await tasks.get({ containerId: c2 })).process?.status, Status.RUNNING);
  const metrics = (await tasks.metrics({ filters: [`id==${c2}`] })).metrics;
  assert.equal(metrics.length, 1);
  assert.equal(metrics[0].id, c2);
  assert.ok((metrics[0].data?.value.length ?? 0) > 0, "cgroup stats came back");
  // No criu on this machine: the runtime's failure comes back, naming the task.
  await assert.rejects(tasks.checkpoint({ containerId: c2 }), new RegExp(`checkpoint task ${c2}`));
  assert.equal((await tasks.get({ containerId: c2 })).process?.status, Status.RUNNING);

  const execOut = w.fifoReader("exec-out");
  const spec = (await w.baseSpec()).process;
  spec.args = ["sh", "-c", "echo exec says hi; exit 5"];
  await tasks.exec({
    containerId: c2,
    execId: "e1",
    stdout: execOut.path,
    stderr: execOut.path,
    spec: create(AnySchema, {
      typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
      value: new TextEncoder().encode(JSON.stringify(spec)),
    }),
  });
  w.step = "exec e1";
  const execWait = tasks.wait({ containerId: c2, execId: "e1" });
  execWait.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
  const execStart = await tasks.start({ containerId: c2, execId: "e1" });
  assert.ok(execStart.pid > 0 && execStart.pid !== pid);
  w.step = "read e1 output";
  assert.equal(await execOut.until("\n"), "exec says hi\n");
  w.step = "wait e1";
  assert.equal((await execWait).exitStatus, 5);
  const execDel = await tasks.deleteProcess({ containerId: c2, execId: "e1" });
  assert.equal(execDel.exitStatus, 5);
  await rejectsWith(tasks.exec({ containerId: c2, execId: "" }), Code.InvalidArgument);

  // The Go shim reports this without a code (Unknown); the message is what counts.
  await assert.rejects(tasks.delete({ containerId: c2 }), /running/);
  w.step = "kill c2";
  const exit2 = tasks.wait({ containerId: c2 });
  exit2.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
  await tasks.kill({ containerId: c2, signal: 9 });
  assert.equal((await exit2).exitStatus, 137);
  w.step = "delete c2";
  await tasks.delete({ containerId: c2 });
  assert.ok(!isAlive(pid), "container process gone");
  assert.deepEqual((await tasks.list({})).tasks, []);
}

Deno.test("runtime: task lifecycle with Debian's containerd-shim-runc-v2", async () => {
  await withWorld((w) => lifecycle(w, "io.containerd.runc.v2"));
});

Deno.test("runtime: task lifecycle with berth's own shim (io.containerd.berth.v2)", async (t) => {
  if (!(await berthShimBuilt())) {
    await t.step({
      name: "skipped: bin/containerd-shim-berth-v2 is not built",
      ignore: true,
      fn: () => {},
    });
    return;
  }
  await withWorld((w) => lifecycle(w, "io.containerd.berth.v2"));
});

Deno.test("runtime: bad input gets clear errors and leaves nothing behind", async () => {
  await withWorld(async (w) => {
    const tasks = w.tasks;
    await w.makeContainer("badrt", ["true"], "no-such-runtime");
    await rejectsWith(tasks.create({ containerId: "badrt" }), Code.NotFound, /no-such-runtime/);
    await w.makeContainer("nobin", ["true"], "io.containerd.nope.v1");
    await rejectsWith(
      tasks.create({ containerId: "nobin" }),
      Code.NotFound,
      /containerd-shim-nope-v1 not installed/,
    );
    await rejectsWith(tasks.create({ containerId: "ghost" }), Code.NotFound);
    await rejectsWith(tasks.start({ containerId: "ghost" }), Code.NotFound);
    await rejectsWith(tasks.create({ containerId: "" }), Code.InvalidArgument);
    await rejectsWith(tasks.create({ containerId: "../etc" }), Code.NotFound);
    // A second task for the same container.
    const twice = `${w.ns}-twice`;
    await w.makeContainer(twice, ["sleep", "1000"], "io.containerd.runc.v2");
    await tasks.create({ containerId: twice });
    await w.rememberShim(twice);
    await rejectsWith(tasks.create({ containerId: twice }), Code.AlreadyExists, /already exists/);
    await tasks.delete({ containerId: twice });
    await rejectsWith(tasks.start({ containerId: twice }), Code.NotFound);
    await rejectsWith(tasks.delete({ containerId: twice }), Code.NotFound);
    // A snapshotter the daemon does not have.
    await w.svc(Containers).create({
      container: {
        id: "nosnap",
        runtime: { name: "io.containerd.runc.v2" },
        spec: create(AnySchema, {
          typeUrl: SPEC_URL,
          value: new TextEncoder().encode(JSON.stringify(await w.baseSpec())),
        }),
        snapshotter: "zfs",
        snapshotKey: "whatever",
      },
    });
    await rejectsWith(tasks.create({ containerId: "nosnap" }), Code.InvalidArgument, /zfs/);
    await assert.rejects(Deno.stat(`${w.bundles}/nosnap`), Deno.errors.NotFound);
    const noNs = serviceClient(w.client!, Tasks);
    await rejectsWith(noNs.list({}), Code.FailedPrecondition, /namespace/);
    // Nothing half-created: no bundle, no work directory.
    await assert.rejects(Deno.stat(`${w.bundles}/badrt`), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${w.bundles}/nobin`), Deno.errors.NotFound);
    await assert.rejects(Deno.stat(`${w.root}/${TASK_STATE}/${w.ns}/nobin`), Deno.errors.NotFound);
  });
});

for (const runtime of ["io.containerd.runc.v2", "io.containerd.berth.v2"]) {
  Deno.test(`runtime: a daemon killed with SIGKILL finds its running tasks again and cleans up a shim that died meanwhile (${runtime})`, async (t) => {
    if (runtime === "io.containerd.berth.v2" && !(await berthShimBuilt())) {
      await t.step({
        name: "skipped: bin/containerd-shim-berth-v2 is not built",
        ignore: true,
        fn: () => {},
      });
      return;
    }
    await withWorld(async (w) => {
      // 20 live tasks with runc's shim (the number), fewer with berth's slower one,
      // plus one whose shim dies while the daemon is down.
      const live = runtime === "io.containerd.runc.v2" ? 20 : 3;
      const ids = Array.from({ length: live + 1 }, (_, i) => `${w.ns}-r${i + 1}`);
      const pids = new Map<string, number>();
      // The first one writes a line every 100 ms to a fifo read here, through the restart.
      const ticks = w.fifoReader("ticks");
      for (const id of ids) {
        const args = id === ids[0]
          ? ["sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 0.1; done"]
          : ["sleep", "1000"];
        // The one whose shim dies has a shim of its own (a group of one), so the
        // others, sharing a shim by default, live on.
        const own: Record<string, string> = id === ids[live]
          ? { "io.containerd.runc.v2.group": id }
          : {};
        await w.makeContainer(id, args, runtime, own);
        const io = id === ids[0] ? { stdout: ticks.path, stderr: ticks.path } : {};
        const { pid } = await w.tasks.create({ containerId: id, ...io });
        await w.rememberShim(id);
        await w.tasks.start({ containerId: id });
        pids.set(id, pid);
      }
      await ticks.until("tick 2\n");
      w.step = "daemon SIGKILL";
      await w.stop(true);
      // The fourth task's shim dies while no daemon is there.
      const dead = ids[live];
      await killNow(await w.shimPids(dead));
      w.step = "daemon restart";
      await w.start();
      const listed = new Map((await w.tasks.list({})).tasks.map((t) => [t.id, t]));
      assert.deepEqual([...listed.keys()].sort(), ids.slice(0, live).sort());
      for (const id of ids.slice(0, live)) {
        assert.equal(listed.get(id)?.pid, pids.get(id), `${id} listed with its pid`);
        assert.equal(listed.get(id)?.status, Status.RUNNING);
      }
      // Output kept flowing while the daemon was away and after it came back.
      const before = (await ticks.until("\n")).split("\n").length;
      await ticks.until(`tick ${before + 3}\n`);
      // The dead shim's task was cleaned up at start: no bundle, no container.
      await assert.rejects(Deno.stat(`${w.bundles}/${dead}`), Deno.errors.NotFound);
      assert.ok(!isAlive(pids.get(dead)!), "the dead shim's container was removed");
      for (const id of ids.slice(0, live)) {
        w.step = `kill ${id} after restart`;
        const exited = w.tasks.wait({ containerId: id });
        exited.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
        await w.tasks.kill({ containerId: id, signal: 9 });
        assert.equal((await exited).exitStatus, 137);
        await w.tasks.delete({ containerId: id });
        assert.ok(!isAlive(pids.get(id)!));
      }
      assert.deepEqual((await w.tasks.list({})).tasks, []);
    });
  });
}

Deno.test("runtime: tasks of one group share a shim and its connection", async () => {
  await withWorld(async (w) => {
    // The runc shim serves every task whose spec names the same group.
    const group = { "io.containerd.runc.v2.group": `${w.ns}-g` };
    const [a, b] = [`${w.ns}-ga`, `${w.ns}-gb`];
    await w.makeContainer(a, ["sleep", "1000"], "io.containerd.runc.v2", group);
    await w.makeContainer(b, ["sleep", "1000"], "io.containerd.runc.v2", group);
    await w.tasks.create({ containerId: a });
    await w.rememberShim(a);
    await w.tasks.create({ containerId: b });
    await w.rememberShim(b);
    assert.equal(w.shimAddresses.size, 1, "one address for both");
    assert.equal((await w.shimPids()).length, 1, "one shim process");
    await w.tasks.start({ containerId: a });
    await w.tasks.start({ containerId: b });
    // Deleting the first leaves the shim serving the second.
    const exitA = w.tasks.wait({ containerId: a });
    exitA.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
    await w.tasks.kill({ containerId: a, signal: 9 });
    assert.equal((await exitA).exitStatus, 137);
    await w.tasks.delete({ containerId: a });
    assert.equal((await w.shimPids()).length, 1, "the shim stays for b");
    assert.equal((await w.tasks.get({ containerId: b })).process?.status, Status.RUNNING);
    const exitB = w.tasks.wait({ containerId: b });
    exitB.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
    await w.tasks.kill({ containerId: b, signal: 9 });
    assert.equal((await exitB).exitStatus, 137);
    await w.tasks.delete({ containerId: b });
    const deadline = Date.now() + 5000;
    while ((await w.shimPids()).length > 0 && Date.now() < deadline) await sleep(50);
    assert.deepEqual(await w.shimPids(), [], "the shim is gone with its last task");
  });
});

Deno.test("runtime: a shim killed with SIGKILL gives a TaskExit and leaves nothing", async () => {
  await withWorld(async (w) => {
    const id = `${w.ns}-victim`;
    await w.makeContainer(id, ["sleep", "1000"], "io.containerd.runc.v2");
    const { pid } = await w.tasks.create({ containerId: id });
    await w.rememberShim(id);
    await w.tasks.start({ containerId: id });
    const abort = new AbortController();
    const events = serviceClient(w.client!, Events);
    const stream = events.subscribe({ filters: [`topic=="/tasks/exit",namespace==${w.ns}`] }, {
      signal: abort.signal,
    })[Symbol.asyncIterator]();
    // Subscribed once the first call round-trips; a List makes sure of it.
    const first = stream.next();
    await w.tasks.list({});
    const shims = await w.shimPids(id);
    assert.equal(shims.length, 1, "one shim for the task");
    await killNow(shims);
    const ev = await first;
    abort.abort();
    await stream.return?.();
    assert.ok(!ev.done);
    const exit = fromBinary(TaskExitSchema, ev.value.event!.value);
    assert.equal(exit.containerId, id);
    assert.equal(exit.exitStatus, 137);
    // The cleanup finishes with the bundle; give it a moment.
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline) {
      try {
        await Deno.stat(`${w.bundles}/${id}`);
        await sleep(50);
      } catch {
        break;
      }
    }
    await assert.rejects(Deno.stat(`${w.bundles}/${id}`), Deno.errors.NotFound, "bundle removed");
    assert.deepEqual(mountsUnder(w.tmp), [], "rootfs unmounted");
    assert.ok(!isAlive(pid), "the container went with its shim");
    await rejectsWith(w.tasks.get({ containerId: id }), Code.NotFound);
  });
});

Deno.test("runtime: 50 tasks started in parallel all run and are all cleaned up", async () => {
  await withWorld(async (w) => {
    const ids = Array.from({ length: 50 }, (_, i) => `${w.ns}-p${i}`);
    w.step = "create containers";
    await Promise.all(
      ids.map((id) => w.makeContainer(id, ["sleep", "1000"], "io.containerd.runc.v2")),
    );
    w.step = "create and start tasks";
    const pids = await Promise.all(ids.map(async (id) => {
      const { pid } = await w.tasks.create({ containerId: id });
      await w.rememberShim(id);
      await w.tasks.start({ containerId: id });
      return pid;
    }));
    const listed = (await w.tasks.list({})).tasks;
    assert.equal(listed.length, 50);
    assert.ok(listed.every((t) => t.status === Status.RUNNING));
    assert.deepEqual(new Set(listed.map((t) => t.pid)), new Set(pids));
    w.step = "kill and delete tasks";
    await Promise.all(ids.map(async (id) => {
      const exited = w.tasks.wait({ containerId: id });
      exited.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
      await w.tasks.kill({ containerId: id, signal: 9 });
      assert.equal((await exited).exitStatus, 137);
      await w.tasks.delete({ containerId: id });
    }));
    assert.deepEqual((await w.tasks.list({})).tasks, []);
    assert.ok(pids.every((pid) => !isAlive(pid)), "every container process is gone");
  });
});

Deno.test("runtime: a daemon stopped with SIGTERM leaves its tasks running for the next one", async () => {
  await withWorld(async (w) => {
    const id = `${w.ns}-calm`;
    await w.makeContainer(id, ["sleep", "1000"], "io.containerd.runc.v2");
    const { pid } = await w.tasks.create({ containerId: id });
    await w.rememberShim(id);
    await w.tasks.start({ containerId: id });
    w.step = "daemon SIGTERM";
    await w.stop();
    assert.ok(isAlive(pid), "the container outlives the daemon");
    assert.equal((await w.shimPids(id)).length, 1, "so does its shim");
    w.step = "daemon restart";
    await w.start();
    w.step = "list after restart";
    const [t] = (await w.tasks.list({})).tasks;
    assert.equal(t?.id, id);
    assert.equal(t?.pid, pid);
    const exited = w.tasks.wait({ containerId: id });
    exited.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
    await w.tasks.kill({ containerId: id, signal: 9 });
    assert.equal((await exited).exitStatus, 137);
    await w.tasks.delete({ containerId: id });
  });
});

Deno.test("runtime: the berth client runs an imported image through either shim", async () => {
  await withWorld(async (w) => {
    w.step = "build and import the image";
    const img = await buildBusyboxImage(w.tmp);
    const imported = await client(w, ["images", "import", img.archive]);
    assert.equal(imported.code, 0, imported.out);
    const runtimes = ["io.containerd.runc.v2"];
    if (await berthShimBuilt()) runtimes.push("io.containerd.berth.v2");
    for (const [i, runtime] of runtimes.entries()) {
      w.step = `run --rm with ${runtime}`;
      const r = await client(w, [
        "run",
        "--rm",
        "--runtime",
        runtime,
        img.ref,
        `${w.ns}-img${i}`,
        "sh",
        "-c",
        "echo hello from the image; exit 3",
      ]);
      assert.equal(r.code, 3, r.out);
      assert.match(r.out, /hello from the image/);
    }
    assert.deepEqual((await w.tasks.list({})).tasks, []);
  });
});

for (const runtime of ["io.containerd.berth.v2", "io.containerd.runc.v2"]) {
  Deno.test(`runtime: containers share shims up to shim_group_size; an emptied shim serves the next, then goes (${runtime})`, async (t) => {
    if (runtime === "io.containerd.berth.v2" && !(await berthShimBuilt())) {
      await t.step({ name: "skipped: berth's shim is not built", ignore: true, fn: () => {} });
      return;
    }
    await withWorld(async (w) => {
      const ids = [1, 2, 3, 4].map((i) => `${w.ns}-s${i}`);
      const shimOfTask = new Map<string, number>();
      for (const id of ids) {
        w.step = `create ${id}`;
        await w.makeContainer(id, ["sleep", "1000"], runtime);
        await w.tasks.create({ containerId: id });
        await w.tasks.start({ containerId: id });
        shimOfTask.set(id, await shimPidOf(w, id));
      }
      const first = shimOfTask.get(ids[0])!;
      assert.deepEqual(ids.slice(0, 3).map((id) => shimOfTask.get(id)), [first, first, first]);
      assert.notEqual(shimOfTask.get(ids[3]), first, "the fourth goes to a second shim");
      // A group annotation still wins: that container gets the group's own shim.
      const grouped = `${w.ns}-grouped`;
      await w.makeContainer(grouped, ["sleep", "1000"], runtime, {
        "io.containerd.runc.v2.group": grouped,
      });
      await w.tasks.create({ containerId: grouped });
      const groupedShim = await shimPidOf(w, grouped);
      assert.ok(![...shimOfTask.values()].includes(groupedShim), "a grouped task's own shim");
      await killAndDelete(w, grouped);
      // Emptied, the first shim waits: the next container goes into it, no shim started.
      w.step = "empty the first shim";
      for (const id of ids.slice(0, 3)) await killAndDelete(w, id);
      assert.ok(isAlive(first), "an emptied shared shim waits for the next container");
      const next = `${w.ns}-s5`;
      await w.makeContainer(next, ["sleep", "1000"], runtime);
      await w.tasks.create({ containerId: next });
      assert.ok(
        [first, shimOfTask.get(ids[3])].includes(await shimPidOf(w, next)),
        "the next container reuses a shared shim",
      );
      await w.tasks.start({ containerId: next });
      for (const id of [next, ids[3]]) await killAndDelete(w, id);
      // Past the idle timeout both shims are shut down; assertClean checks nothing is left.
      w.step = "idle shims retire";
      const deadline = Date.now() + 15_000;
      while (Date.now() < deadline && [...shimOfTask.values()].some(isAlive)) await sleep(100);
      assert.ok(![...shimOfTask.values()].some(isAlive), "idle shared shims are shut down");
    }, sharedShims(3, "1s"));
  });
}

Deno.test("runtime: containers created at once from an empty pool wait for the shims being started instead of each starting one", async (t) => {
  if (!(await berthShimBuilt())) {
    await t.step({ name: "skipped: berth's shim is not built", ignore: true, fn: () => {} });
    return;
  }
  await withWorld(async (w) => {
    const ids = Array.from({ length: 6 }, (_, i) => `${w.ns}-c${i + 1}`);
    for (const id of ids) await w.makeContainer(id, ["sleep", "1000"], "io.containerd.berth.v2");
    w.step = "six creates at once";
    await Promise.all(ids.map((id) => w.tasks.create({ containerId: id })));
    const shimOf: Record<string, number> = {};
    for (const id of ids) shimOf[id] = await shimPidOf(w, id);
    assert.equal(
      new Set(Object.values(shimOf)).size,
      2,
      `six containers, three to a shim: two shims started (${JSON.stringify(shimOf)})`,
    );
    for (const id of ids) await killAndDelete(w, id);
  }, sharedShims(3));
});

Deno.test("runtime: CRI pods share the daemon's shims; a pod's container goes to its sandbox's shim, full or not", async (t) => {
  if (!(await berthShimBuilt())) {
    await t.step({ name: "skipped: berth's shim is not built", ignore: true, fn: () => {} });
    return;
  }
  const runtime = "io.containerd.berth.v2";
  await withWorld(async (w) => {
    // Sandboxes carry their own id as the CRI's sandbox-id; containers their pod's.
    const pod = (sandbox: string) => ({ "io.kubernetes.cri.sandbox-id": sandbox });
    const [a, b, c] = ["a", "b", "c"].map((x) => `${w.ns}-pod${x}`);
    const shimOf = new Map<string, number>();
    for (const sb of [a, b, c]) {
      w.step = `sandbox ${sb}`;
      await w.makeContainer(sb, ["sleep", "1000"], runtime, pod(sb));
      await w.tasks.create({ containerId: sb });
      await w.tasks.start({ containerId: sb });
      shimOf.set(sb, await shimPidOf(w, sb));
    }
    assert.equal(shimOf.get(a), shimOf.get(b), "two pods in one shared shim");
    assert.notEqual(shimOf.get(c), shimOf.get(a), "the third pod: the first shim is full");
    // Pod a's shim is full (2 of 2): its container still goes there, not to c's shim.
    const ca = `${w.ns}-ctr-a`;
    w.step = "container of pod a";
    await w.makeContainer(ca, ["sleep", "1000"], runtime, pod(a));
    await w.tasks.create({ containerId: ca });
    await w.tasks.start({ containerId: ca });
    assert.equal(await shimPidOf(w, ca), shimOf.get(a), "a pod's container joins its sandbox");
    // The sandboxes gone, the container still holds its shim: it is not retired under it.
    await killAndDelete(w, a);
    await killAndDelete(w, b);
    await sleep(1500); // past the idle timeout
    assert.ok(isAlive(shimOf.get(a)!), "the shim stays while the pod's container lives");
    assert.equal((await w.tasks.get({ containerId: ca })).process?.status, Status.RUNNING);
    for (const id of [ca, c]) await killAndDelete(w, id);
  }, sharedShims(2, "1s"));
});

Deno.test("runtime: a shared shim killed with SIGKILL: each of its 10 tasks exits, nothing leaks, the other shim's task runs on", async (t) => {
  if (!(await berthShimBuilt())) {
    await t.step({ name: "skipped: berth's shim is not built", ignore: true, fn: () => {} });
    return;
  }
  await withWorld(async (w) => {
    const ids = Array.from({ length: 11 }, (_, i) => `${w.ns}-b${i + 1}`);
    const pids = new Map<string, number>();
    for (const id of ids) {
      w.step = `create ${id}`;
      await w.makeContainer(id, ["sleep", "1000"], "io.containerd.berth.v2");
      pids.set(id, (await w.tasks.create({ containerId: id })).pid);
      await w.tasks.start({ containerId: id });
    }
    const victim = await shimPidOf(w, ids[0]);
    for (const id of ids.slice(1, 10)) assert.equal(await shimPidOf(w, id), victim);
    const survivor = ids[10];
    assert.notEqual(await shimPidOf(w, survivor), victim, "the 11th is in a second shim");
    const abort = new AbortController();
    const stream = serviceClient(w.client!, Events).subscribe(
      { filters: [`topic=="/tasks/exit",namespace==${w.ns}`] },
      { signal: abort.signal },
    )[Symbol.asyncIterator]();
    const exits = new Map<string, number>();
    const reading = (async () => {
      while (exits.size < 10) {
        const ev = await stream.next();
        if (ev.done) break;
        const exit = fromBinary(TaskExitSchema, ev.value.event!.value);
        exits.set(exit.containerId, exit.exitStatus);
      }
    })();
    await w.tasks.list({}); // the subscription is in place once a call round-trips
    w.step = "SIGKILL the shared shim";
    await killNow([victim]);
    await reading;
    abort.abort();
    await stream.return?.();
    assert.deepEqual([...exits.keys()].sort(), ids.slice(0, 10).sort(), "10 of 10 exits");
    for (const status of exits.values()) assert.equal(status, 137);
    w.step = "cleanup of the dead shim's tasks";
    const deadline = Date.now() + 20_000;
    const left = () =>
      ids.slice(0, 10).filter((id) =>
        Deno.statSync(w.bundles).isDirectory &&
        [...Deno.readDirSync(w.bundles)].some((e) => e.name === id)
      );
    while (left().length > 0 && Date.now() < deadline) await sleep(100);
    assert.deepEqual(left(), [], "every bundle of the dead shim removed");
    for (const id of ids.slice(0, 10)) {
      assert.ok(!isAlive(pids.get(id)!), `${id}'s process went with its shim`);
      await rejectsWith(w.tasks.get({ containerId: id }), Code.NotFound);
    }
    assert.equal((await w.tasks.get({ containerId: survivor })).process?.status, Status.RUNNING);
    await killAndDelete(w, survivor);
  }, sharedShims(10));
});

Deno.test("runtime: a daemon killed with SIGKILL takes its shared shim back, and shuts down one left idle", async (t) => {
  if (!(await berthShimBuilt())) {
    await t.step({ name: "skipped: berth's shim is not built", ignore: true, fn: () => {} });
    return;
  }
  await withWorld(async (w) => {
    // Four fill the first shared shim; a fifth starts a second, and is deleted
    // with one of the four: the second shim idles, the first has room for one.
    const ids = [1, 2, 3, 4].map((i) => `${w.ns}-k${i}`);
    for (const id of ids) {
      await w.makeContainer(id, ["sleep", "1000"], "io.containerd.berth.v2");
      await w.tasks.create({ containerId: id });
      await w.tasks.start({ containerId: id });
    }
    const shared = await shimPidOf(w, ids[0]);
    const lone = `${w.ns}-lone`;
    await w.makeContainer(lone, ["sleep", "1000"], "io.containerd.berth.v2");
    await w.tasks.create({ containerId: lone });
    const idle = await shimPidOf(w, lone);
    assert.notEqual(idle, shared, "a full shared shim takes no more");
    await killAndDelete(w, lone);
    await killAndDelete(w, ids[3]);
    assert.ok(isAlive(idle), "the emptied shim idles");
    w.step = "daemon SIGKILL";
    await w.stop(true);
    await w.start();
    const listed = (await w.tasks.list({})).tasks.map((t) => t.id).sort();
    assert.deepEqual(listed, ids.slice(0, 3).sort(), "every task of the shared shim is back");
    w.step = "idle shim shut down after restart";
    const deadline = Date.now() + 10_000;
    while (isAlive(idle) && Date.now() < deadline) await sleep(100);
    assert.ok(!isAlive(idle), "the shim left idle is shut down by the new daemon");
    // The shared shim is taken back: the next container joins it.
    const more = `${w.ns}-k5`;
    await w.makeContainer(more, ["sleep", "1000"], "io.containerd.berth.v2");
    await w.tasks.create({ containerId: more });
    assert.equal(await shimPidOf(w, more), shared, "a new task joins the recovered shared shim");
    for (const id of [...ids.slice(0, 3), more]) await killAndDelete(w, id);
  }, sharedShims(4, "30s"));
});

for (const runtime of ["io.containerd.runc.v2", "io.containerd.berth.v2"]) {
  // containerd#9719: an exec's exit must never be reported after its init's.
  Deno.test(`runtime: an exec's exit is reported before its init's when the init dies (${runtime})`, async (t) => {
    if (runtime === "io.containerd.berth.v2" && !(await berthShimBuilt())) {
      await t.step({
        name: "skipped: bin/containerd-shim-berth-v2 is not built",
        ignore: true,
        fn: () => {},
      });
      return;
    }
    await withWorld(async (w) => {
      const id = `${w.ns}-order`;
      await w.makeContainer(id, ["sleep", "1000"], runtime);
      await w.tasks.create({ containerId: id });
      await w.rememberShim(id);
      const { pid } = await w.tasks.start({ containerId: id });
      const execPid = await startExec(w, id, "ex1", ["sleep", "1000"]);
      const events = exitEvents(w);
      await w.tasks.list({}); // the subscription is in place once a later call round-trips
      w.step = "kill the init";
      await w.tasks.kill({ containerId: id, signal: 9 });
      await waitUntil("two TaskExit events", () => events.seen.length >= 2);
      events.stop();
      assert.deepEqual(
        events.seen.map((e) => e.pid),
        [execPid, pid],
        `exec's exit first: ${JSON.stringify(events.seen)}`,
      );
      assert.equal(events.seen[0].id, "ex1");
      await w.tasks.deleteProcess({ containerId: id, execId: "ex1" });
      await w.tasks.delete({ containerId: id });
    });
  });

  // containerd#6771: the container's process exits while no daemon is running. (The shim that
  // outlived its task here in 1 run of 3 was the daemon's own warm spare, which is gone.)
  Deno.test({
    name: `runtime: an exit while the daemon is down is there after its restart (${runtime})`,
    fn: async (t) => {
      if (runtime === "io.containerd.berth.v2" && !(await berthShimBuilt())) {
        await t.step({
          name: "skipped: bin/containerd-shim-berth-v2 is not built",
          ignore: true,
          fn: () => {},
        });
        return;
      }
      await withWorld(async (w) => {
        const [gone, stays] = [`${w.ns}-gone`, `${w.ns}-stays`];
        const pids = new Map<string, number>();
        for (const id of [gone, stays]) {
          await w.makeContainer(id, ["sleep", "1000"], runtime);
          await w.tasks.create({ containerId: id });
          await w.rememberShim(id);
          pids.set(id, (await w.tasks.start({ containerId: id })).pid);
        }
        w.step = "daemon SIGKILL";
        await w.stop(true);
        Deno.kill(pids.get(gone)!, "SIGKILL");
        await waitUntil("the container's process to exit", () => !isAlive(pids.get(gone)!));
        w.step = "daemon restart";
        await w.start();
        const listed = new Map((await w.tasks.list({})).tasks.map((t) => [t.id, t]));
        assert.equal(listed.get(gone)?.status, Status.STOPPED, "the exit is seen");
        assert.equal(listed.get(gone)?.exitStatus, 137);
        assert.equal(listed.get(stays)?.status, Status.RUNNING, "the other is still running");
        assert.equal((await w.tasks.wait({ containerId: gone })).exitStatus, 137);
        assert.equal((await w.tasks.delete({ containerId: gone })).exitStatus, 137);
        const exit = w.tasks.wait({ containerId: stays });
        exit.catch(() => {}); // awaited below
        await w.tasks.kill({ containerId: stays, signal: 9 });
        assert.equal((await exit).exitStatus, 137);
        await w.tasks.delete({ containerId: stays });
      });
    },
  });
}

Deno.test("runtime: a shim killed with SIGKILL while its task runs an exec leaves no process, mount, bundle or runc state", async () => {
  await withWorld(async (w) => {
    const id = `${w.ns}-victim2`;
    await w.makeContainer(id, ["sleep", "1000"], "io.containerd.runc.v2");
    await w.tasks.create({ containerId: id });
    await w.rememberShim(id);
    const { pid } = await w.tasks.start({ containerId: id });
    const execPid = await startExec(w, id, "ex1", ["sleep", "1000"]);
    const events = exitEvents(w);
    await w.tasks.list({});
    await killNow(await w.shimPids(id));
    await waitUntil("the TaskExit of the init", () => events.seen.some((e) => e.pid === pid));
    events.stop();
    await waitUntil(
      "the bundle to go",
      () => Deno.stat(`${w.bundles}/${id}`).then(() => false, () => true),
    );
    await rejectsWith(w.tasks.get({ containerId: id }), Code.NotFound);
    assert.ok(!isAlive(pid), "the init went with its shim");
    await waitUntil("the exec's process to go", () => !isAlive(execPid));
    assert.deepEqual(mountsUnder(w.tmp), [], "rootfs unmounted");
    await assert.rejects(
      Deno.stat(`${RUNC_SHIM_ROOT}/${w.ns}/${id}`),
      Deno.errors.NotFound,
      "runc state removed",
    );
    // The container record stays, and a new task on it works.
    await w.svc(Containers).get({ id });
  });
});

// containerd#6860: the daemon dies in the middle of a create. BERTH_FAILPOINTS makes it
// SIGKILL itself right after the bundle is written, after the shim is started, and after
// the shim's Create (runc create) answered; the restarted daemon must leave nothing behind.
for (const point of ["task-create:bundle", "task-create:shim", "task-create:runc"]) {
  Deno.test(`runtime: a daemon SIGKILLed at ${point} leaves nothing after its restart`, async () => {
    await withWorld(async (w) => {
      const id = `${w.ns}-half`;
      await w.makeContainer(id, ["sleep", "1000"], "io.containerd.runc.v2");
      w.step = `restart with ${point} armed`;
      await w.stop();
      Deno.env.set("BERTH_FAILPOINTS", point);
      try {
        await w.start();
      } finally {
        Deno.env.delete("BERTH_FAILPOINTS");
      }
      w.step = `create up to ${point}`;
      await rejectsWith(w.tasks.create({ containerId: id }), Code.Unavailable);
      const status = await w.daemon!.done;
      assert.equal(status.signal, "SIGKILL", `the daemon killed itself at ${point}`);
      await w.rememberShim(id);
      w.daemon = undefined;
      w.step = "restart";
      await w.start();
      // A task whose Create got through is there (CREATED) and can be deleted; nothing else is.
      const tasks = (await w.tasks.list({})).tasks;
      if (point === "task-create:runc") {
        assert.deepEqual(tasks.map((t) => [t.id, t.status]), [[id, Status.CREATED]]);
        await w.tasks.delete({ containerId: id });
      } else {
        assert.deepEqual(tasks, [], "no half-made task");
      }
      await waitUntil("the shim to go", async () => (await w.shimPids(id)).length === 0);
      await waitUntil(
        "the bundle to go",
        () => Deno.stat(`${w.bundles}/${id}`).then(() => false, () => true),
      );
      assert.deepEqual(mountsUnder(w.tmp), [], "nothing mounted");
      await assert.rejects(Deno.stat(`${RUNC_SHIM_ROOT}/${w.ns}/${id}`), Deno.errors.NotFound);
      // The container works again: a new task runs and is deleted.
      await w.tasks.create({ containerId: id });
      await w.rememberShim(id);
      await w.tasks.start({ containerId: id });
      const exit = w.tasks.wait({ containerId: id });
      exit.catch(() => {}); // awaited below
      await w.tasks.kill({ containerId: id, signal: 9 });
      assert.equal((await exit).exitStatus, 137);
      await w.tasks.delete({ containerId: id });
    });
  });
}

for (const runtime of ["io.containerd.runc.v2", "io.containerd.berth.v2"]) {
  // containerd#4434: runc writing more than a pipe holds (64 KiB) as its error must not hang the shim.
  Deno.test(`runtime: a runc error over 64 KiB fails the create instead of hanging the shim (${runtime})`, async (t) => {
    if (runtime === "io.containerd.berth.v2" && !(await berthShimBuilt())) {
      await t.step({
        name: "skipped: bin/containerd-shim-berth-v2 is not built",
        ignore: true,
        fn: () => {},
      });
      return;
    }
    await withWorld(async (w) => {
      const id = `${w.ns}-bigerr`;
      // runc names the executable it cannot find in its error: 100 KiB of name.
      const name = `/${"n".repeat(100 << 10)}`;
      await w.makeContainer(id, [name], runtime);
      w.step = "create with a 100 KiB runc error";
      await assert.rejects(w.tasks.create({ containerId: id }), (e: unknown) => {
        assert.ok(e instanceof Error);
        assert.ok(e.message.includes("nnnnnnnn"), e.message.slice(0, 300));
        // Both shims pass on about 64 KiB of it (65,539 characters here), then the create fails.
        assert.ok(e.message.length > 60_000, `${e.message.length} characters`);
        return true;
      });
      await w.rememberShim(id);
      assert.deepEqual((await w.tasks.list({})).tasks, []);
      await waitUntil("the shim to go", async () => (await w.shimPids(id)).length === 0);
    });
  });
}
