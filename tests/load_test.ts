/**
 * The reliability suite's load forms (issue 16): many create/start/exec/
 * kill/delete cycles at once, a lot of output from many containers at once
 * (byte-exact, by sha256), and a stream of events to many subscribers
 * (all received, in order). After each: no shim, zombie, mount, fifo,
 * socket, container record or snapshot left, the daemon's fds back where
 * they were and its RSS back within 10% of where it started.
 *
 * Quick forms here (`make test`); `make stress` (BERTH_STRESS=1) runs the
 * issue's numbers: 500 cycles at concurrency 20, 100 MB from each of 20
 * containers, 1,000 events a second to 10 subscribers. Each prints one
 * summary line (`load cycles: ...`, `load output: ...`, `load events: ...`).
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { TaskExitSchema } from "../src/gen/containerd/events/task_pb.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Events } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import { Snapshots } from "../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../src/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { connect, serviceClient } from "../src/ttrpc/mod.ts";
import { close as closeFd, mkfifo, openFifo, readFd } from "../ffi/mod.ts";
import { STRESS } from "./support/fuzz.ts";
import { mountsUnder } from "./support/mounts.ts";
import { allPids, parentOf, rssKiB } from "./support/proc.ts";
import {
  killAndDelete,
  NS_KEY,
  ownRuntime,
  sleep,
  SNAPSHOTTER,
  startExec,
  waitUntil,
  withWorld,
  World,
} from "./support/world.ts";

/** Shared shims that retire 1 s after their last task, so a leak check need not wait 10 s. */
const QUICK_IDLE = `version = 2
[plugins."io.containerd.runtime.v2.task"]
  shim_idle_timeout = "1s"
`;

/** Open fds of `pid` (a leaked fifo, socket or file shows up here). */
function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

/** Zombies whose parent is `pid` (an exit nobody reaped). */
function zombiesOf(pid: number): number[] {
  return allPids().filter((p) => {
    try {
      const stat = Deno.readTextFileSync(`/proc/${p}/stat`);
      return stat[stat.lastIndexOf(")") + 2] === "Z" && parentOf(p) === pid;
    } catch {
      return false;
    }
  });
}

/** Fifos and sockets under `dir`, but for the daemon's own two sockets. */
function strayFiles(dir: string, keep: string[]): string[] {
  const found: string[] = [];
  const walk = (d: string) => {
    let entries: Deno.DirEntry[] = [];
    try {
      entries = [...Deno.readDirSync(d)];
    } catch {
      return;
    }
    for (const e of entries) {
      const p = `${d}/${e.name}`;
      if (e.isDirectory) {
        walk(p);
        continue;
      }
      if (e.isFile || e.isSymlink || keep.includes(p)) continue;
      found.push(p); // neither file, link nor directory: a fifo or a socket
    }
  };
  walk(dir);
  return found;
}

/** What the daemon holds before a load form: its fds and RSS. */
interface Baseline {
  fds: number;
  rss: number;
}

function baseline(w: World): Baseline {
  const pid = w.daemon!.child.pid;
  return { fds: fdCount(pid), rss: rssKiB(pid)! };
}

/**
 * Everything a load form must leave as it found it; returns a summary of
 * what was checked. Waits for emptied shims to retire and for the daemon's
 * heap to settle (RSS sampled for up to 10 s: V8 gives memory back lazily).
 */
async function assertNothingLeft(w: World, before: Baseline, keepSnapshots = ["base"]) {
  const pid = w.daemon!.child.pid;
  assert.deepEqual((await w.tasks.list({})).tasks, [], "no task left");
  const containers = (await w.svc(Containers).list({})).containers.map((c) => c.id);
  assert.deepEqual(containers, [], "no container record left");
  const snaps: string[] = [];
  for await (const r of w.svc(Snapshots).list({ snapshotter: SNAPSHOTTER })) {
    for (const info of r.info) snaps.push(info.name);
  }
  assert.deepEqual(snaps.sort(), keepSnapshots, "no snapshot left");
  await waitUntil("emptied shims to retire", async () => (await w.shimPids()).length === 0, 20_000);
  assert.deepEqual(w.daemonShims(), [], "no shim of the daemon left");
  assert.deepEqual(zombiesOf(pid), [], "no zombie under the daemon");
  assert.deepEqual(mountsUnder(w.tmp), [], "no mount left");
  const keep = [w.address, `${w.address}.ttrpc`];
  assert.deepEqual(strayFiles(w.state, keep), [], "no fifo or socket left in state");
  assert.deepEqual(strayFiles(w.root, keep), [], "no fifo or socket left in root");
  let fds = fdCount(pid);
  let rss = rssKiB(pid)!;
  const deadline = Date.now() + 10_000;
  while ((fds > before.fds || rss > before.rss * 1.1) && Date.now() < deadline) {
    await sleep(500);
    fds = fdCount(pid);
    rss = rssKiB(pid)!;
  }
  assert.ok(fds <= before.fds, `daemon fds back: ${before.fds} before, ${fds} after`);
  const grew = ((rss - before.rss) / before.rss) * 100;
  assert.ok(
    rss <= before.rss * 1.1,
    `daemon RSS back within 10%: ${before.rss} KiB before, ${rss} KiB after`,
  );
  return `0 leaked shims, zombies, mounts, fifos, sockets, rows, snapshots; daemon fds ${before.fds}->${fds}, RSS ${
    Math.round(before.rss / 1024)
  }->${Math.round(rss / 1024)} MiB (${grew >= 0 ? "+" : ""}${grew.toFixed(1)}%)`;
}

/** Runs `n` jobs, `width` at a time. */
async function pool(n: number, width: number, job: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < n) await job(next++);
  }));
}

/** One whole life: container, task, start, an exec that exits 7, kill, delete, removal. */
async function cycle(w: World, runtime: string, id: string): Promise<void> {
  await w.makeContainer(id, ["sleep", "1000"], runtime);
  await w.tasks.create({ containerId: id });
  await w.rememberShim(id);
  await w.tasks.start({ containerId: id });
  await startExec(w, id, "x", ["sh", "-c", "exit 7"]);
  assert.equal((await w.tasks.wait({ containerId: id, execId: "x" })).exitStatus, 7);
  assert.equal((await w.tasks.deleteProcess({ containerId: id, execId: "x" })).exitStatus, 7);
  await killAndDelete(w, id);
  await w.removeContainer(id);
}

Deno.test("load: create/start/exec/kill/delete cycles at concurrency 20 leave nothing and the daemon's RSS comes back", async () => {
  const cycles = STRESS ? 500 : 50;
  const width = 20;
  const runtime = await ownRuntime();
  await withWorld(
    async (w) => {
      // Warm-up: one round at full width, so the baseline has every code path loaded.
      w.step = "warm-up";
      await pool(width, width, (i) => cycle(w, runtime, `${w.ns}-w${i}`));
      await waitUntil("warm-up shims to retire", async () => (await w.shimPids()).length === 0);
      await sleep(1000);
      const before = baseline(w);
      const t0 = performance.now();
      w.step = `${cycles} cycles`;
      let done = 0;
      await pool(cycles, width, async (i) => {
        await cycle(w, runtime, `${w.ns}-c${i}`);
        done++;
      });
      const secs = (performance.now() - t0) / 1000;
      assert.equal(done, cycles);
      w.step = "leak check";
      const found = await assertNothingLeft(w, before);
      console.log(
        `load cycles: ${cycles} cycles at concurrency ${width} (${runtime}) in ${
          secs.toFixed(1)
        } s: all ok; ${found}`,
      );
    },
    QUICK_IDLE,
    STRESS ? 1_800_000 : 300_000,
  );
});

/**
 * A fifo read here that hashes what comes through it (opened read-write, so
 * no open waits and no EOF is awaited); `until(n)` resolves once n bytes came.
 */
function hashingFifo(path: string) {
  mkfifo(path, 0o600);
  const fd = openFifo(path, "readwrite");
  const hash = createHash("sha256");
  const stop = new AbortController();
  let bytes = 0;
  let wake: () => void = () => {};
  const reading = (async () => {
    const buf = new Uint8Array(256 << 10);
    try {
      for (;;) {
        const n = await readFd(fd, buf, { signal: stop.signal });
        if (n === 0) break;
        hash.update(buf.subarray(0, n));
        bytes += n;
        wake();
      }
    } catch { /* stopped */ }
  })();
  return {
    get bytes() {
      return bytes;
    },
    /** Resolves once `n` bytes came, or after `ms` without a byte (output cut). */
    async until(n: number, ms: number): Promise<void> {
      while (bytes < n) {
        const before = bytes;
        await Promise.race([new Promise<void>((r) => wake = r), sleep(ms)]);
        if (bytes === before) return;
      }
    },
    async close(): Promise<string> {
      stop.abort();
      await reading;
      closeFd(fd);
      return hash.digest("hex");
    },
  };
}

// containerd#7289: output cut at exit and under parallel load.
Deno.test("load: output from many containers at once arrives byte-exact (sha256) up to the last byte after exit", async () => {
  const [count, mib] = STRESS ? [20, 100] : [5, 10];
  const size = mib << 20;
  const runtime = await ownRuntime();
  await withWorld(
    async (w) => {
      const ids = Array.from({ length: count }, (_, i) => `${w.ns}-o${i}`);
      w.step = "warm-up";
      await cycle(w, runtime, `${w.ns}-warm`);
      await waitUntil("warm-up shims to retire", async () => (await w.shimPids()).length === 0);
      await sleep(1000);
      const before = baseline(w);
      // Random bytes, teed to the stdout fifo (fd 3) and hashed in the container; the hash goes to stderr.
      const script = `{ head -c ${size} /dev/urandom | tee /dev/fd/3 | sha256sum >&2; } 3>&1`;
      const outs = new Map<string, ReturnType<typeof hashingFifo>>();
      const errs = new Map<string, ReturnType<World["fifoReader"]>>();
      w.step = "create the writers";
      for (const id of ids) {
        await w.makeContainer(id, ["sh", "-c", script], runtime);
        const out = hashingFifo(`${w.tmp}/fifos/${id}-out`);
        const err = w.fifoReader(`${id}-err`);
        outs.set(id, out);
        errs.set(id, err);
        await w.tasks.create({
          containerId: id,
          stdout: `${w.tmp}/fifos/${id}-out`,
          stderr: err.path,
        });
        await w.rememberShim(id);
      }
      const t0 = performance.now();
      w.step = "start all and wait";
      const exits = await Promise.all(ids.map(async (id) => {
        const waiting = w.tasks.wait({ containerId: id });
        waiting.catch(() => {}); // awaited below
        await w.tasks.start({ containerId: id });
        return (await waiting).exitStatus;
      }));
      assert.deepEqual(exits, ids.map(() => 0), "every writer exits 0");
      w.step = "read the last bytes";
      // Every byte written must arrive; none may come after the exit is reported and then stop short.
      const got = new Map<string, { bytes: number; sha: string }>();
      for (const id of ids) {
        const out = outs.get(id)!;
        await out.until(size, 5000);
        got.set(id, { bytes: out.bytes, sha: await out.close() });
      }
      const secs = (performance.now() - t0) / 1000;
      for (const id of ids) {
        const said = (await errs.get(id)!.until("\n")).trim().split(/\s+/)[0];
        const { bytes, sha } = got.get(id)!;
        assert.equal(bytes, size, `${id}: ${bytes} of ${size} bytes came`);
        assert.equal(sha, said, `${id}: sha256 of what came matches what the container wrote`);
      }
      w.step = "delete the writers";
      for (const id of ids) {
        await w.tasks.delete({ containerId: id });
        await w.removeContainer(id);
      }
      for (const id of ids) {
        await Deno.remove(`${w.tmp}/fifos/${id}-out`);
      }
      const found = await assertNothingLeft(w, before);
      console.log(
        `load output: ${count} containers x ${mib} MiB at once (${runtime}) in ${
          secs.toFixed(1)
        } s (${
          ((count * mib) / secs).toFixed(0)
        } MiB/s): ${count} of ${count} byte-exact by sha256; ${found}`,
      );
    },
    QUICK_IDLE,
    STRESS ? 1_800_000 : 300_000,
  );
});

/** What one round of events did: how long publishing took, and what each subscriber saw. */
interface EventRound {
  secs: number;
  seen: string[][];
}

/**
 * `total` events published at `rate`/s by `publishers` (each on its own
 * connection, one after another, each event naming its publisher and
 * sequence number) to `subscribers` subscriptions on connections of their own.
 */
async function eventRound(
  w: World,
  rate: number,
  total: number,
  subscribers: number,
  publishers: number,
): Promise<EventRound> {
  const topic = "/load/tick";
  const path = `${w.address}.ttrpc`;
  const meta = { defaults: { metadata: { [NS_KEY]: w.ns } } };
  const subs = await Promise.all(Array.from({ length: subscribers }, async () => {
    const conn = await connect(path);
    const abort = new AbortController();
    const seen: string[] = [];
    let wake: () => void = () => {};
    const stream = serviceClient(conn, Events, meta).subscribe(
      { filters: [`topic=="${topic}",namespace==${w.ns}`] },
      { signal: abort.signal },
    );
    const reading = (async () => {
      try {
        for await (const env of stream) {
          const ev = fromBinary(TaskExitSchema, env.event!.value);
          seen.push(`${ev.containerId}:${ev.pid}`);
          wake();
        }
      } catch { /* stopped */ }
    })();
    // The subscription is in place once a later call on its connection returns.
    await serviceClient(conn, Tasks, meta).list({});
    return {
      seen,
      async all(ms: number) {
        const deadline = Date.now() + ms;
        while (seen.length < total && Date.now() < deadline) {
          await Promise.race([new Promise<void>((r) => wake = r), sleep(500)]);
        }
      },
      async stop() {
        abort.abort();
        await reading;
        conn.close();
      },
    };
  }));
  const t0 = performance.now();
  const perPublisher = total / publishers;
  const interval = (1000 * publishers) / rate;
  await Promise.all(Array.from({ length: publishers }, async (_, p) => {
    const conn = await connect(path);
    try {
      const events = serviceClient(conn, Events, meta);
      const start = performance.now();
      for (let seq = 0; seq < perPublisher; seq++) {
        const due = start + seq * interval;
        const now = performance.now();
        if (due > now) await sleep(due - now);
        const exit = create(TaskExitSchema, { containerId: `p${p}`, pid: seq });
        await events.publish({
          topic,
          event: create(AnySchema, {
            typeUrl: "containerd.events.TaskExit",
            value: toBinary(TaskExitSchema, exit),
          }),
        });
      }
    } finally {
      conn.close();
    }
  }));
  const secs = (performance.now() - t0) / 1000;
  for (const s of subs) await s.all(10_000);
  for (const s of subs) await s.stop();
  for (const [i, s] of subs.entries()) {
    assert.equal(s.seen.length, total, `subscriber ${i}: ${s.seen.length} of ${total} events`);
    // Each publisher's events in the order it sent them, none missing or twice.
    for (let p = 0; p < publishers; p++) {
      const mine = s.seen.filter((e) => e.startsWith(`p${p}:`)).map((e) =>
        Number(e.slice(e.indexOf(":") + 1))
      );
      const sent = Array.from({ length: perPublisher }, (_, k) => k);
      assert.deepEqual(mine, sent, `subscriber ${i}, publisher ${p}`);
    }
    // And every subscriber sees the same one order.
    assert.deepEqual(s.seen, subs[0].seen, `subscriber ${i} saw the order subscriber 0 saw`);
  }
  return { secs, seen: subs.map((s) => s.seen) };
}

Deno.test("load: events at a steady rate reach every subscriber, all of them, in one order", async () => {
  const [rate, seconds, subscribers, publishers] = STRESS ? [1000, 10, 10, 4] : [200, 5, 10, 4];
  const total = rate * seconds;
  await withWorld(
    async (w) => {
      // Warm-up: a round of one second, so the baseline has every code path loaded.
      w.step = "warm-up";
      await eventRound(w, rate, rate, subscribers, publishers);
      await sleep(1000);
      const before = baseline(w);
      w.step = `publish ${total} events`;
      const { secs } = await eventRound(w, rate, total, subscribers, publishers);
      const found = await assertNothingLeft(w, before);
      console.log(
        `load events: ${total} events from ${publishers} publishers at ${
          (total / secs).toFixed(0)
        }/s (asked ${rate}/s) to ${subscribers} subscribers: ${subscribers} of ${subscribers} got all ${total}, in one order; ${found}`,
      );
    },
    undefined,
    STRESS ? 600_000 : 120_000,
  );
});
