/**
 * The reliability suite's crash form (issue 16): the daemon SIGKILLed round
 * after round, each time with 20 containers running and requests in flight
 * (creates, starts, execs, deletes and an image import), and two
 * containers' processes killed while it is down. The kill comes at a
 * random moment 50-1550 ms in, or sooner, once half the requests have
 * ended. After each restart:
 *
 * - every task is listed with its true state: a running one's pid is alive,
 *   a stopped one's is gone, and nothing the test knew of went missing;
 * - each exit that happened while the daemon was down is STOPPED in
 *   `tasks ls` with its status, and comes as a TaskExit event;
 * - every cut request failed Unavailable, never with another error;
 * - bundles, rootfs mounts and runc state match the tasks listed;
 * - no half-made container, snapshot, lease or ingest is left: what a cut
 *   request made is either whole or held by its client's lease, and once
 *   those leases go (their clients are dead) garbage collection leaves
 *   exactly the containers' snapshots and the image's content;
 * - the time from the daemon's start to its first answered call is
 *   measured (the executable a user runs, `bin/berth`).
 *
 * `make test` runs the issue's 10 kills; `make stress` (BERTH_STRESS=1)
 * runs 30. One summary line: `crash restarts: ...`. The kill times and
 * choices follow from a printed seed; `BERTH_FUZZ_SEED=<n>` replays them.
 * `BERTH_CRASH_RUNTIMES` (comma-separated) narrows the shims it runs with.
 */
import assert from "node:assert/strict";
import { Code, isCode } from "../src/errdefs/mod.ts";
import {
  type Container,
  Containers,
} from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Content } from "../src/gen/containerd/services/content/v1/content_pb.ts";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.ts";
import { Leases } from "../src/gen/containerd/services/leases/v1/leases_pb.ts";
import { Kind, Snapshots } from "../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { type Process, Status } from "../src/gen/containerd/types/task_pb.ts";
import { run } from "../src/spawn/mod.ts";
import { privateBerth } from "./support/binary.ts";
import { bounded, fuzzSeed, Rng, STRESS } from "./support/fuzz.ts";
import { buildLargeImage } from "./support/image.ts";
import { mountsUnder } from "./support/mounts.ts";
import { isAlive, readCmdline } from "./support/proc.ts";
import {
  BERTH_RUNC_ROOT,
  berthShimBuilt,
  exitEvents,
  RUNC_SHIM_ROOT,
  sleep,
  SNAPSHOTTER,
  startExec,
  waitUntil,
  withWorld,
  type World,
} from "./support/world.ts";

const ROUNDS = STRESS ? 30 : 10;
const RUNNING = 20;
/**
 * How long after the exits made while the daemon is down it is started
 * again, per shim. A shim retries an undelivered event on its own clock:
 * berth's 0.5, 1.5, 3.5 s (then every 4 s) after the first try,
 * containerd's 1, 3, 6 s. Started between two retries, with the next one
 * 1.8 s away, a daemon that serves in time has the test's subscriber in
 * place before the retry that delivers the exits (one that landed before
 * any subscriber could connect would be missed by all of them).
 */
const RESTART_AFTER_MS: Record<string, number> = {
  "io.containerd.berth.v2": 1700,
  "io.containerd.runc.v2": 1200,
};
/** Longest wait for an exit's event after the restart (the shim's last retry is 7.5 s after it). */
const EVENT_WAIT_MS = 12_000;
const SLEEPER = ["sleep", "100000"];

/** A request in flight when the daemon was killed, and how it ended. */
interface Op {
  kind: "create" | "start" | "exec" | "delete" | "import";
  id: string;
  /** The lease it works under, when it makes one. */
  lease?: string;
  done: Promise<void>;
  /** Set once it has ended: "ok", or the error it ended with. */
  outcome?: "ok" | unknown;
}

/** A SIGKILLed daemon's cut requests must fail Unavailable; anything else is a bug it hid. */
function cutCleanly(op: Op): string | undefined {
  if (op.outcome === "ok" || op.kind === "import") return undefined;
  if (isCode(op.outcome, Code.Unavailable)) return undefined;
  return `${op.kind} ${op.id}: ${op.outcome instanceof Error ? op.outcome.message : op.outcome}`;
}

/** Runs `fn` and records how it ended on the op. */
function track(op: Omit<Op, "done">, fn: () => Promise<void>): Op {
  const o = op as Op;
  o.done = fn().then(() => {
    o.outcome = "ok";
  }, (err) => {
    o.outcome = err;
  });
  return o;
}

/** Resolves once half of `ops` have ended, whichever way. */
function halfEnded(ops: Op[]): Promise<void> {
  let left = Math.ceil(ops.length / 2);
  return new Promise((resolve) => {
    for (const o of ops) {
      o.done.then(() => {
        if (--left === 0) resolve();
      });
    }
  });
}

/** Creates and starts a sleeping container `id` under `lease`; resolves with its init's pid. */
async function launch(w: World, runtime: string, id: string, lease = "rt"): Promise<number> {
  await w.makeContainer(id, SLEEPER, runtime, {}, undefined, lease);
  await w.tasks.create({ containerId: id });
  await w.rememberShim(id);
  return (await w.tasks.start({ containerId: id })).pid;
}

/** Kills (if running), deletes the task, the container and its snapshot, whichever are there. */
async function removeAll(w: World, id: string): Promise<void> {
  const task = await w.tasks.get({ containerId: id }).then((r) => r.process, (err) => {
    if (isCode(err, Code.NotFound)) return undefined;
    throw err;
  });
  if (task !== undefined) {
    if (task.status !== Status.STOPPED) {
      const exited = w.tasks.wait({ containerId: id });
      exited.catch(() => {}); // awaited below
      await w.tasks.kill({ containerId: id, signal: 9, all: true });
      await exited;
    }
    await w.tasks.delete({ containerId: id });
  }
  await w.svc(Containers).delete({ id }).catch((err) => {
    if (!isCode(err, Code.NotFound)) throw err;
  });
  await w.svc(Snapshots).remove({ snapshotter: SNAPSHOTTER, key: `${id}-snap` }).catch((err) => {
    if (!isCode(err, Code.NotFound)) throw err;
  });
}

/** True while `pid` is still runc's init, waiting to be started: a created task's true state. */
function inRuncInit(pid: number): boolean {
  const argv = readCmdline(pid);
  return argv !== null && argv.includes("init") && argv.some((a) => a.includes("runc"));
}

/** Fails naming what is missing from `got` and what is there beyond `want`. */
function sameSet(
  what: string,
  got: string[],
  want: string[],
  about = "",
  mayLack: string[] = [],
): void {
  const missing = want.filter((x) => !got.includes(x) && !mayLack.includes(x));
  const extra = got.filter((x) => !want.includes(x));
  assert.ok(
    missing.length === 0 && extra.length === 0,
    `${what} match the tasks listed: missing ${JSON.stringify(missing)}, extra ${
      JSON.stringify(extra)
    }${about}`,
  );
}

/** Names of the entries of `dir` (none when it is missing). */
function entries(dir: string): string[] {
  try {
    return [...Deno.readDirSync(dir)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

/** Every snapshot of the world's snapshotter, by kind. */
async function snapshotsByKind(w: World): Promise<{ active: string[]; committed: string[] }> {
  const active: string[] = [];
  const committed: string[] = [];
  for await (const r of w.svc(Snapshots).list({ snapshotter: SNAPSHOTTER })) {
    for (const info of r.info) (info.kind === Kind.COMMITTED ? committed : active).push(info.name);
  }
  return { active: active.sort(), committed: committed.sort() };
}

/** What the rounds counted, for the summary line. */
interface Tally {
  serveMs: number[];
  cut: number;
  whole: number;
  exitsDown: number;
  cutMadeContainer: number;
  peerCreatedButRunning: number;
  /** Cut execs whose runc pid-file temporary containerd's shim left behind. */
  peerStalePidFile: number;
  /** Cut creates whose task containerd's shim left STOPPED. */
  peerCreateStopped: number;
}

/** One round's cast, and the requests it puts in flight. */
interface Round {
  n: number;
  runtime: string;
  /** Running containers whose process is SIGKILLed while the daemon is down. */
  victims: string[];
  /** Running containers removed by a request in flight. */
  deleted: string[];
  /** Running containers that get an exec in flight. */
  execIn: string[];
  /**
   * The round's exec id, new each round as clients' are: a cut exec may
   * leave its id unusable in containerd's shim (see {@link finishCut}).
   */
  execId: string;
  /** Created, not started, tasks: started by a request in flight. */
  unstarted: string[];
  ops: Op[];
}

/** What the restarted daemon lists, and which CREATED tasks in fact run. */
interface Listed {
  tasks: Map<string, Process>;
  containers: Container[];
  /** Tasks said CREATED whose process already runs (containerd's shim, a cut `runc start`). */
  startedUnseen: Set<string>;
}

/**
 * Tops the running containers up to RUNNING, creates two tasks to start,
 * and picks (by `rng`) the victims, the deletes and the execs of the round.
 */
async function castRound(
  w: World,
  runtime: string,
  n: number,
  rng: Rng,
  running: Map<string, number>,
  fresh: (what: string) => string,
): Promise<Round> {
  w.step = `round ${n}: top up to ${RUNNING} running`;
  const adding = Array.from({ length: RUNNING - running.size }, () => fresh("s"));
  await Promise.all(adding.map(async (id) => running.set(id, await launch(w, runtime, id))));
  const unstarted = [fresh("u"), fresh("u")];
  for (const id of unstarted) {
    await w.makeContainer(id, SLEEPER, runtime);
    await w.tasks.create({ containerId: id });
    await w.rememberShim(id);
  }
  const shuffled = [...running.keys()].map((id) => [rng.u32(), id] as const)
    .sort((a, b) => a[0] - b[0]).map(([, id]) => id);
  const deleted = shuffled.slice(2, 4);
  for (const id of deleted) running.delete(id);
  return {
    n,
    runtime,
    victims: shuffled.slice(0, 2),
    deleted,
    execIn: shuffled.slice(4, 7),
    execId: `x${n}`,
    unstarted,
    ops: [],
  };
}

/**
 * Puts the round's requests in flight: 4 creates (each under its own
 * client lease), the starts, the execs, the deletes, and one import by the
 * berth client `berthPath`.
 */
function putInFlight(
  w: World,
  r: Round,
  image: { ref: string; archive: string },
  berthPath: string,
  fresh: (what: string) => string,
): void {
  w.step = `round ${r.n}: requests in flight`;
  for (let k = 0; k < 4; k++) {
    const id = fresh("n");
    const lease = `${id}-lease`;
    r.ops.push(track({ kind: "create", id, lease }, async () => {
      const expire = new Date(Date.now() + 3600_000).toISOString();
      await w.svc(Leases).create({ id: lease, labels: { "containerd.io/gc.expire": expire } });
      await launch(w, r.runtime, id, lease);
      await w.svc(Leases).delete({ id: lease });
    }));
  }
  for (const id of r.unstarted) {
    r.ops.push(track({ kind: "start", id }, async () => {
      await w.tasks.start({ containerId: id });
    }));
  }
  for (const id of r.execIn) {
    r.ops.push(track({ kind: "exec", id }, async () => {
      await startExec(w, id, r.execId, ["sh", "-c", "exit 3"]);
      assert.equal((await w.tasks.wait({ containerId: id, execId: r.execId })).exitStatus, 3);
      await w.tasks.deleteProcess({ containerId: id, execId: r.execId });
    }));
  }
  for (const id of r.deleted) r.ops.push(track({ kind: "delete", id }, () => removeAll(w, id)));
  r.ops.push(track({ kind: "import", id: image.ref }, async () => {
    const res = await run(berthPath, [
      "-a",
      w.address,
      "-n",
      w.ns,
      "images",
      "import",
      image.archive,
    ]);
    if (res.code !== 0) {
      throw new Error(`import exited ${res.code}: ${new TextDecoder().decode(res.stderr)}`);
    }
  }));
}

/**
 * SIGKILLs the daemon with the round's requests in flight and the victims'
 * processes while it is down, checks that every cut request failed
 * Unavailable, and starts it again (RESTART_AFTER_MS after the exits),
 * timing its first answer. Returns a TaskExit subscription made at once.
 */
async function killAndRestart(
  w: World,
  r: Round,
  running: Map<string, number>,
  tally: Tally,
): Promise<ReturnType<typeof exitEvents>> {
  w.step = `round ${r.n}: SIGKILL`;
  // The daemon dies with its connections open; the requests on them learn it from there.
  const daemon = w.daemon!;
  daemon.child.kill("SIGKILL");
  await daemon.done;
  for (const id of r.victims) Deno.kill(running.get(id)!, "SIGKILL");
  const exitedAt = performance.now();
  // A cut request ends at once (its connection is gone); one still going is a hang.
  await Promise.all(
    r.ops.map((o) => bounded(`${o.kind} ${o.id}, in flight at the kill,`, 30_000, o.done)),
  );
  await w.stop();
  const unclean = r.ops.map(cutCleanly).filter((s) => s !== undefined);
  assert.deepEqual(unclean, [], "every cut request failed Unavailable");
  for (const o of r.ops) o.outcome === "ok" ? tally.whole++ : tally.cut++;
  tally.exitsDown += r.victims.length;

  w.step = `round ${r.n}: restart`;
  const wait = RESTART_AFTER_MS[r.runtime] - (performance.now() - exitedAt);
  if (wait > 0) await sleep(wait);
  const t0 = performance.now();
  await w.start(5);
  await w.svc(Version).version({});
  tally.serveMs.push(performance.now() - t0);
  return exitEvents(w);
}

/**
 * Checks what the restarted daemon lists against the truth: each task's
 * state against its process, every known container with its pid, the
 * victims STOPPED (137), and bundles, rootfs mounts, runc state and
 * snapshots matching the tasks and containers listed.
 */
async function checkTrueState(
  w: World,
  r: Round,
  running: Map<string, number>,
  tally: Tally,
): Promise<Listed> {
  w.step = `round ${r.n}: true state`;
  const tasks = new Map((await w.tasks.list({})).tasks.map((t) => [t.id, t]));
  const startedUnseen = new Set<string>();
  for (const [id, t] of tasks) {
    const alive = isAlive(t.pid);
    const says = Status[t.status];
    assert.equal(
      alive,
      t.status !== Status.STOPPED,
      `${id} is ${says}, pid ${t.pid} alive: ${alive}`,
    );
    if (t.status === Status.CREATED && !inRuncInit(t.pid)) {
      // containerd's shim kills a `runc start` whose caller went away; cut after
      // runc let the process go but before it removed exec.fifo, the task stays
      // CREATED while it runs, and a second start waits on the fifo for ever.
      assert.equal(
        r.runtime,
        "io.containerd.runc.v2",
        `${id} is CREATED but runs: ${readCmdline(t.pid)?.join(" ")}`,
      );
      startedUnseen.add(id);
      tally.peerCreatedButRunning++;
    }
  }
  for (const [id, pid] of running) {
    const t = tasks.get(id);
    assert.ok(t !== undefined, `${id} is listed`);
    assert.equal(t.pid, pid, `${id} keeps its pid`);
    if (r.victims.includes(id)) {
      assert.equal(t.status, Status.STOPPED, `${id}, killed while the daemon was down`);
      assert.equal(t.exitStatus, 137, `${id}'s exit status`);
    } else {
      assert.equal(t.status, Status.RUNNING, `${id} still runs`);
    }
  }
  // What exists on disk is what is listed: bundles, rootfs mounts, runc state.
  const listed = [...tasks.keys()].sort();
  sameSet("bundles", entries(w.bundles), listed);
  const rootfs = mountsUnder(w.tmp).filter((m) => m.startsWith(`${w.bundles}/`));
  const about = ` (tasks: ${
    [...tasks.values()].map((t) => `${t.id} ${Status[t.status]}`).join(", ")
  }; victims ${r.victims}; deleted ${r.deleted}; ops ${
    r.ops.map((o) => `${o.kind} ${o.id} ${o.outcome === "ok" ? "whole" : "cut"}`)
  })`;
  // A stopped task whose delete was cut may have lost its mount and runc state already.
  const stopped = listed.filter((id) => tasks.get(id)!.status === Status.STOPPED);
  sameSet("rootfs mounts", rootfs.map((m) => m.split("/").at(-2)!), listed, about, stopped);
  const runc = [
    ...entries(`${BERTH_RUNC_ROOT}/${w.ns}`),
    ...entries(`${RUNC_SHIM_ROOT}/${w.ns}`),
  ];
  sameSet("runc state", runc, listed, about, stopped);
  // Every container record is whole: its snapshot is there.
  const containers = (await w.svc(Containers).list({})).containers;
  const held = (await snapshotsByKind(w)).active;
  for (const c of containers) {
    assert.ok(held.includes(c.snapshotKey), `container ${c.id} has its snapshot ${c.snapshotKey}`);
  }
  for (const id of listed) {
    assert.ok(containers.some((c) => c.id === id), `the task ${id} has its container`);
  }
  return { tasks, containers, startedUnseen };
}

/** Waits for a TaskExit of each victim, sent by its shim once the daemon is back. */
async function checkExitEvents(
  w: World,
  r: Round,
  running: Map<string, number>,
  events: ReturnType<typeof exitEvents>,
): Promise<void> {
  w.step = `round ${r.n}: exits while down come as events`;
  try {
    await waitUntil(
      "a TaskExit for each exit while the daemon was down",
      () =>
        r.victims.every((id) => events.seen.some((e) => e.id === id && e.pid === running.get(id))),
      EVENT_WAIT_MS,
    );
  } finally {
    events.stop();
  }
}

/**
 * Finishes each request that was in flight as its client would (a cut
 * create or start is done again, a cut delete repeated), and removes the
 * victims; `running` then holds exactly the containers that run.
 */
async function finishCut(
  w: World,
  r: Round,
  seen: Listed,
  running: Map<string, number>,
  tally: Tally,
): Promise<void> {
  const { tasks, containers, startedUnseen } = seen;
  for (const o of r.ops) {
    w.step = `round ${r.n}: finish ${o.kind} ${o.id} (${
      o.outcome === "ok" ? "whole" : "cut"
    }, task ${Status[tasks.get(o.id)?.status ?? -1] ?? "none"})`;
    if (o.kind === "create") {
      const c = containers.find((c) => c.id === o.id);
      if (c !== undefined && o.outcome !== "ok") tally.cutMadeContainer++;
      if (startedUnseen.has(o.id)) {
        await removeAll(w, o.id);
      } else if (c !== undefined) {
        let t = tasks.get(o.id);
        if (t?.status === Status.STOPPED) {
          // containerd's shim kills a `runc create` whose caller went away; cut
          // late, the task is made but its init went with runc. A client deletes
          // and creates it again; berth's shim lets runc finish.
          assert.equal(r.runtime, "io.containerd.runc.v2", `${o.id}: STOPPED after a cut create`);
          tally.peerCreateStopped++;
          await w.tasks.delete({ containerId: o.id });
          t = undefined;
        }
        if (t === undefined) await w.tasks.create({ containerId: o.id });
        await w.rememberShim(o.id);
        if (t === undefined || t.status === Status.CREATED) {
          await bounded(`start ${o.id}`, 30_000, w.tasks.start({ containerId: o.id }));
        }
        const now = await w.tasks.get({ containerId: o.id });
        assert.equal(now.process?.status, Status.RUNNING, `${o.id} runs`);
        running.set(o.id, now.process!.pid);
      }
    } else if (o.kind === "start") {
      const t = tasks.get(o.id);
      assert.ok(t !== undefined, `${o.id} (start in flight) is listed`);
      assert.notEqual(t.status, Status.STOPPED, `${o.id} did not stop`);
      if (startedUnseen.has(o.id)) {
        await removeAll(w, o.id);
      } else {
        if (t.status === Status.CREATED) {
          await bounded(`start ${o.id}`, 30_000, w.tasks.start({ containerId: o.id }));
        }
        running.set(o.id, (await w.tasks.get({ containerId: o.id })).process!.pid);
      }
    } else if (o.kind === "exec") {
      const execId = r.execId;
      const x = await w.tasks.get({ containerId: o.id, execId }).then(
        (res) => res.process,
        (err) => {
          if (isCode(err, Code.NotFound)) return undefined;
          throw err;
        },
      );
      if (x !== undefined) {
        if (x.status !== Status.CREATED) {
          assert.equal(
            (await w.tasks.wait({ containerId: o.id, execId })).exitStatus,
            3,
            `${o.id}'s exec exit status`,
          );
        }
        await w.tasks.deleteProcess({ containerId: o.id, execId });
      }
      // containerd's shim kills a `runc exec` whose caller went away; cut between
      // runc's exclusive create of the pid file's temporary and its rename, the
      // temporary stays and every later exec of that id fails "file exists".
      if (entries(`${w.bundles}/${o.id}`).includes(`.${execId}.pid`)) {
        assert.equal(r.runtime, "io.containerd.runc.v2", `${o.id}: .${execId}.pid left`);
        tally.peerStalePidFile++;
      }
    } else if (o.kind === "delete") {
      await removeAll(w, o.id);
    }
  }
  for (const id of r.victims) {
    assert.equal((await w.tasks.delete({ containerId: id })).exitStatus, 137);
    // The container may hold the only reference to its snapshot (a create's lease
    // is gone), so a collection can take the snapshot as soon as the container goes.
    await removeAll(w, id);
    running.delete(id);
  }
}

/**
 * Checks that only dead clients' leases are left, deletes them and the
 * image, collects, and finds exactly the containers' snapshots and "base":
 * no other snapshot, lease, ingest or blob.
 */
async function checkNothingHalfMade(w: World, r: Round, imageRef: string): Promise<void> {
  w.step = `round ${r.n}: nothing half-made`;
  // Leases left are those of clients that died with the daemon: a cut
  // create's, or a cut import's (the berth client's own lease).
  const cutLeases = new Set(
    r.ops.filter((o) => o.outcome !== "ok" && o.lease !== undefined).map((o) => o.lease!),
  );
  const importCut = r.ops.some((o) => o.kind === "import" && o.outcome !== "ok");
  const leases = (await w.svc(Leases).list({})).leases.map((l) => l.id);
  for (const l of leases) {
    if (l === "rt" || cutLeases.has(l)) continue;
    assert.ok(
      importCut && l.startsWith("berth-client-"),
      `lease ${l} belongs to a request that was cut`,
    );
  }
  // Their clients are gone: their leases go (as on expiry), and GC runs with the last.
  for (const id of leases.filter((l) => l !== "rt")) await w.svc(Leases).delete({ id });
  await w.svc(Images).delete({ name: imageRef }).catch((err) => {
    if (!isCode(err, Code.NotFound)) throw err;
  });
  // A lease deleted with sync runs a collection before it answers.
  await w.svc(Leases).create({ id: "collect" });
  await w.svc(Leases).delete({ id: "collect", sync: true });
  const snaps = await snapshotsByKind(w);
  const keys = (await w.svc(Containers).list({})).containers.map((c) => c.snapshotKey);
  assert.deepEqual(snaps.active, keys.sort(), "active snapshots: the containers' own");
  assert.deepEqual(snaps.committed, ["base"], "committed snapshots: the base only");
  const ingests = (await w.svc(Content).listStatuses({})).statuses.map((s) => s.ref);
  assert.deepEqual(ingests, [], "no ingest left");
  const blobs: string[] = [];
  for await (const res of w.svc(Content).list({})) {
    for (const info of res.info) blobs.push(info.digest);
  }
  assert.deepEqual(blobs, [], "no blob left once the image is gone");
}

/** The test's one summary line. */
function summary(runtime: string, seed: number, t: Tally): string {
  const sorted = [...t.serveMs].sort((a, b) => a - b);
  const within = t.serveMs.filter((ms) => ms <= 1000).length;
  const peer =
    (t.peerCreatedButRunning > 0
      ? ` (but ${t.peerCreatedButRunning} that containerd's shim said CREATED while they ran: its runc start was cut)`
      : "") +
    (t.peerStalePidFile > 0
      ? `; ${t.peerStalePidFile} cut execs whose runc pid-file temporary containerd's shim left`
      : "") +
    (t.peerCreateStopped > 0
      ? `; ${t.peerCreateStopped} cut creates whose task containerd's shim left STOPPED`
      : "");
  return `crash restarts (${runtime}): ${ROUNDS} SIGKILLs with ${RUNNING} running and ${
    t.cut + t.whole
  } requests in flight (${t.cut} cut, ${t.cutMadeContainer} of the cut creates after their container record; ${t.whole} whole), seed ${seed}: ${t.exitsDown} of ${t.exitsDown} exits while down in tasks ls and as events; every task's state true${peer}; 0 half-made containers, snapshots, leases, ingests or blobs; serving after ${
    Math.round(sorted[Math.floor(sorted.length / 2)])
  } ms median, ${
    Math.round(sorted[sorted.length - 1])
  } ms max, within 1 s in ${within} of ${ROUNDS}`;
}

for (
  const runtime
    of (Deno.env.get("BERTH_CRASH_RUNTIMES") ?? "io.containerd.berth.v2,io.containerd.runc.v2")
      .split(",")
) {
  Deno.test(`crash: the daemon SIGKILLed again and again under load loses nothing and leaves nothing half-made (${runtime})`, async (t) => {
    if (!(await berthShimBuilt())) {
      await t.step({ name: "skipped: bin/berth is not built", ignore: true, fn: () => {} });
      return;
    }
    const seed = fuzzSeed(`crash restarts (${runtime})`);
    const rng = new Rng(seed);
    const berth = await privateBerth();
    const tally: Tally = {
      serveMs: [],
      cut: 0,
      whole: 0,
      exitsDown: 0,
      cutMadeContainer: 0,
      peerCreatedButRunning: 0,
      peerStalePidFile: 0,
      peerCreateStopped: 0,
    };
    try {
      await withWorld(
        async (w) => {
          const image = await buildLargeImage(w.tmp, 24, 3);
          const running = new Map<string, number>(); // container -> its init's pid
          let serial = 0;
          const fresh = (what: string) => `${w.ns}-${what}${serial++}`;
          for (let n = 1; n <= ROUNDS; n++) {
            const r = await castRound(w, runtime, n, rng, running, fresh);
            putInFlight(w, r, image, berth.path, fresh);
            // At a random moment, but before half the requests are done: on a fast
            // machine most would otherwise end before the kill and none be cut.
            await Promise.race([sleep(50 + rng.int(1500)), halfEnded(r.ops)]);
            const events = await killAndRestart(w, r, running, tally);
            const seen = await checkTrueState(w, r, running, tally);
            await checkExitEvents(w, r, running, events);
            await finishCut(w, r, seen, running, tally);
            await checkNothingHalfMade(w, r, image.ref);
          }
          w.step = "remove everything";
          await Promise.all([...running.keys()].map((id) => removeAll(w, id)));
          assert.deepEqual((await w.tasks.list({})).tasks, [], "no task left");
        },
        undefined,
        STRESS ? 1_800_000 : 600_000,
        (w) => {
          w.binary = berth.path;
          return Promise.resolve();
        },
      );
    } finally {
      berth.remove();
    }
    console.log(summary(runtime, seed, tally));
  });
}
