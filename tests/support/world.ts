/**
 * One runtime test's world, shared by the runtime, load and fault suites: a
 * `berth daemon` on temporary paths, a busybox base snapshot, containers
 * made through the Containers service, fifo readers, and the checks that
 * nothing (shim, mount, socket, bundle) is left. Every world removes what it
 * started: processes by pid, mounts, sockets, runc state and its directory.
 */
import { TTRPC_NAMESPACE_KEY } from "../../src/namespaces/mod.ts";
import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { Code, isCode } from "../../src/errdefs/mod.ts";
import { TaskExitSchema } from "../../src/gen/containerd/events/task_pb.ts";
import { Containers } from "../../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Events } from "../../src/gen/containerd/services/events/v1/events_pb.ts";
import { Leases } from "../../src/gen/containerd/services/leases/v1/leases_pb.ts";
import { Snapshots } from "../../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../../src/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Task } from "../../src/gen/containerd/task/v2/shim_pb.ts";
import { run, runChecked } from "../../src/spawn/mod.ts";
import { type Client, connect, serviceClient } from "../../src/ttrpc/mod.ts";
import { close as closeFd, getChildSubreaper, mkfifo, openFifo, readFd } from "../../ffi/mod.ts";
import { makeBusyboxRootfs } from "./bundle.ts";
import { daemonAt, type DaemonProc } from "./daemon.ts";
import { mountsUnder, unmountAllUnder } from "./mounts.ts";
import { allPids, findProcesses, isAlive, killNow, readCmdline } from "./proc.ts";

/** berth's entry point, run from source by the client and daemon helpers. */
export const MOD = new URL("../../mod.ts", import.meta.url).pathname;
const BERTH_SHIM = new URL("../../bin/containerd-shim-berth-v2", import.meta.url).pathname;
/** The ttrpc metadata key naming the namespace. */
export const NS_KEY = TTRPC_NAMESPACE_KEY;
/** The type URL of an OCI runtime spec in an Any. */
export const SPEC_URL = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
/** Where Debian's runc shim keeps runc state, per namespace. */
export const RUNC_SHIM_ROOT = "/run/containerd/runc";
/** Where berth's shim keeps runc state, per namespace. */
export const BERTH_RUNC_ROOT = "/run/berth/runc";
/** The snapshotter every world uses. */
export const SNAPSHOTTER = "overlayfs";
/** The task plugin's directory under root and state. */
export const TASK_STATE = "io.containerd.runtime.v2.task";
const TEST_LIMIT_MS = 60_000;

/**
 * The pid of the shim serving task `id` at socket `path` in `ns`, asked
 * from the shim itself (Connect); undefined when nothing answers there.
 */
export async function shimPidAt(path: string, ns: string, id: string): Promise<number | undefined> {
  let client: Client | undefined;
  try {
    client = await connect(path);
    const task = serviceClient(client, Task, { defaults: { metadata: { [NS_KEY]: ns } } });
    return (await task.connect({ id }, { timeoutMs: 3000 })).shimPid;
  } catch {
    return undefined;
  } finally {
    client?.close();
  }
}

/** Resolves after `ms`. */
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One test's world: temp paths, a daemon, clients in a namespace of its own. */
export class World {
  tmp = "";
  ns = `rt${crypto.randomUUID().slice(0, 8)}`;
  daemon?: DaemonProc;
  client?: Client;
  /** Stops each fifo reader and closes its fd. */
  readers: Array<() => Promise<void>> = [];
  /** What the test was doing last (named in a timeout). */
  step = "setup";
  /** Addresses of shims seen, for removing sockets a killed shim left. */
  shimAddresses = new Set<string>();
  /** Socket path of each task's shim. */
  shimOf = new Map<string, string>();
  /** A config file the daemon starts with, if any. */
  config?: string;
  /** A built berth executable to run the daemon with (else mod.ts from source). */
  binary?: string;

  get root() {
    return `${this.tmp}/root`;
  }
  get state() {
    return `${this.tmp}/state`;
  }
  get address() {
    return `${this.tmp}/state/berth.sock`;
  }
  get bundles() {
    return `${this.state}/${TASK_STATE}/${this.ns}`;
  }

  /** A world in a new temporary directory; `config` (TOML) is the daemon's config file. */
  static async make(config?: string): Promise<World> {
    const w = new World();
    w.tmp = await Deno.makeTempDir({ prefix: "berth-runtime-test-" });
    await Deno.mkdir(`${w.tmp}/fifos`);
    if (config !== undefined) {
      w.config = `${w.tmp}/config.toml`;
      await Deno.writeTextFile(w.config, config);
    }
    return w;
  }

  /** Starts the daemon and connects once its ttrpc socket answers (asked every `pollMs`). */
  async start(pollMs = 50): Promise<void> {
    this.daemon = daemonAt(this.root, this.state, this.address, this.config, this.binary);
    const path = `${this.address}.ttrpc`;
    const deadline = Date.now() + 60_000;
    let exited = false;
    this.daemon.done.then(() => exited = true);
    while (true) {
      if (exited) throw new Error(`daemon exited:\n${this.daemon.log()}`);
      try {
        this.client = await connect(path);
        return;
      } catch {
        if (Date.now() > deadline) throw new Error(`daemon not listening:\n${this.daemon.log()}`);
        await sleep(pollMs);
      }
    }
  }

  /** Stops the daemon: SIGTERM, or SIGKILL when `kill`. */
  async stop(kill = false): Promise<void> {
    this.client?.close();
    this.client = undefined;
    if (this.daemon === undefined) return;
    try {
      this.daemon.child.kill(kill ? "SIGKILL" : "SIGTERM");
    } catch { /* already gone */ }
    // A daemon that does not stop in time is killed, so a hang cannot hang the test too.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<boolean>((r) => timer = setTimeout(() => r(true), 20_000));
    const hung = await Promise.race([this.daemon.done.then(() => false), late]);
    clearTimeout(timer);
    if (hung) {
      try {
        this.daemon.child.kill("SIGKILL");
      } catch { /* gone meanwhile */ }
    }
    await this.daemon.done;
    this.daemon = undefined;
  }

  /** A client of service `s` in the world's namespace, its calls under `lease` ("rt" holds the base). */
  svc<S extends Parameters<typeof serviceClient>[1]>(s: S, lease = "rt") {
    return serviceClient(this.client!, s, {
      defaults: { metadata: { [NS_KEY]: this.ns, "containerd-lease": lease }, timeoutMs: 60_000 },
    });
  }
  get tasks() {
    return serviceClient(this.client!, Tasks, { defaults: { metadata: { [NS_KEY]: this.ns } } });
  }

  /** A committed busybox snapshot "base", held by lease "rt". */
  async makeBase(): Promise<void> {
    await this.svc(Leases).create({ id: "rt" });
    const snaps = this.svc(Snapshots);
    const { mounts } = await snaps.prepare({ snapshotter: SNAPSHOTTER, key: "base-active" });
    let dir = mounts[0].source;
    if (mounts[0].type === "overlay") {
      dir = mounts[0].options.find((o) => o.startsWith("upperdir="))!.slice("upperdir=".length);
    }
    await makeBusyboxRootfs(dir);
    await snaps.commit({ snapshotter: SNAPSHOTTER, name: "base", key: "base-active" });
  }

  #spec?: Promise<string>;

  /** A fresh copy of `runc spec`'s default spec (made once per world). */
  async baseSpec() {
    this.#spec ??= (async () => {
      const dir = `${this.tmp}/spec`;
      await Deno.mkdir(dir);
      await runChecked("runc", ["spec", "--bundle", dir]);
      return await Deno.readTextFile(`${dir}/config.json`);
    })();
    return JSON.parse(await this.#spec);
  }

  /**
   * A container `id` running `args` with `runtime` (and its runtime
   * `options`, e.g. runc's), on an active snapshot of "base" prepared
   * under `lease`.
   */
  async makeContainer(
    id: string,
    args: string[],
    runtime: string,
    annotations: Record<string, string> = {},
    options?: Any,
    lease = "rt",
  ): Promise<void> {
    await this.svc(Snapshots, lease).prepare({
      snapshotter: SNAPSHOTTER,
      key: `${id}-snap`,
      parent: "base",
    });
    const spec = await this.baseSpec();
    spec.process.args = args;
    spec.process.terminal = false;
    spec.root = { path: "rootfs", readonly: false };
    spec.annotations = { ...spec.annotations, ...annotations };
    spec.hostname = id;
    await this.svc(Containers, lease).create({
      container: {
        id,
        runtime: { name: runtime, options },
        spec: create(AnySchema, {
          typeUrl: SPEC_URL,
          value: new TextEncoder().encode(JSON.stringify(spec)),
        }),
        snapshotter: SNAPSHOTTER,
        snapshotKey: `${id}-snap`,
      },
    });
  }

  /** Removes container `id` and the snapshot makeContainer made for it (its task already gone). */
  async removeContainer(id: string): Promise<void> {
    await this.svc(Containers).delete({ id });
    await this.svc(Snapshots).remove({ snapshotter: SNAPSHOTTER, key: `${id}-snap` });
  }

  /**
   * A fifo read by this process through ffi: opened read-write and
   * nonblocking, so the open never waits and the shim's open for writing
   * always finds a reader at once (a `cat` started for it now and then was
   * not reading yet when Go's shim gave up its open after 30 s).
   * `until(text)` resolves with what came so far once it holds `text`
   * (shims differ in when they close their write end, so no EOF is awaited).
   */
  fifoReader(name: string): { path: string; until: (t: string) => Promise<string> } {
    const path = `${this.tmp}/fifos/${name}`;
    mkfifo(path, 0o600);
    const fd = openFifo(path, "readwrite");
    const stop = new AbortController();
    let text = "";
    const waiters: (() => void)[] = [];
    const reading = (async () => {
      const decoder = new TextDecoder();
      const buf = new Uint8Array(64 << 10);
      try {
        for (;;) {
          const n = await readFd(fd, buf, { signal: stop.signal });
          if (n === 0) break;
          text += decoder.decode(buf.subarray(0, n), { stream: true });
          for (const w of waiters.splice(0)) w();
        }
      } catch { /* stopped */ }
    })();
    this.readers.push(async () => {
      stop.abort();
      await reading;
      closeFd(fd);
    });
    const until = async (want: string) => {
      while (!text.includes(want)) await new Promise<void>((r) => waiters.push(r));
      return text;
    };
    return { path, until };
  }

  async rememberShim(id: string): Promise<void> {
    try {
      const a = (await Deno.readTextFile(`${this.bundles}/${id}/address`)).trim();
      this.shimAddresses.add(a);
      this.shimOf.set(id, a.replace(/^unix:\/\//, ""));
    } catch { /* no shim yet */ }
  }

  /**
   * Pids of the shims of this world: what their sockets answer (berth's
   * shim may be an adopted spare whose argv names no task), and any process
   * whose argv names this world's namespace.
   */
  async shimPids(id?: string): Promise<number[]> {
    const pids = new Set<number>();
    for (const [task, path] of this.shimOf) {
      if (id !== undefined && task !== id) continue;
      const pid = await shimPidAt(path, this.ns, task);
      if (pid !== undefined && pid > 0) pids.add(pid);
    }
    for (
      const pid of findProcesses((_pid, argv) =>
        argv.some((a) => a.includes("containerd-shim")) && argv.includes(this.ns) &&
        (id === undefined || argv.includes(id))
      )
    ) pids.add(pid);

    // A shim works in its bundle: any process whose cwd is (or was) a bundle here.
    const bundle = id === undefined ? this.bundles : `${this.bundles}/${id}`;
    for (const pid of allPids()) {
      try {
        const cwd = Deno.readLinkSync(`/proc/${pid}/cwd`).replace(/ \(deleted\)$/, "");
        if ((cwd === bundle || cwd.startsWith(`${bundle}/`)) && isAlive(pid)) pids.add(pid);
      } catch { /* gone */ }
    }
    return [...pids];
  }

  /** Every shim process whose argv names this world's daemon (its idle warm spares among them). */
  daemonShims(): number[] {
    return findProcesses((_pid, argv) =>
      argv.some((a) => a.includes("containerd-shim")) && argv.includes(this.address)
    );
  }

  /** Removes whatever is left, whatever happened. */
  async cleanup(): Promise<void> {
    await this.stop().catch(() => {});
    await killNow([...await this.shimPids(), ...this.daemonShims()]);
    // Containers the shims left: runc removes them (and their cgroups).
    for (const runcRoot of [`${RUNC_SHIM_ROOT}/${this.ns}`, `${BERTH_RUNC_ROOT}/${this.ns}`]) {
      let ids: string[] = [];
      try {
        ids = [...Deno.readDirSync(runcRoot)].map((e) => e.name);
      } catch { /* none */ }
      for (const id of ids) await run("runc", ["--root", runcRoot, "delete", "--force", id]);
      await Deno.remove(runcRoot, { recursive: true }).catch(() => {});
    }
    for (const stop of this.readers) await stop();
    await unmountAllUnder(this.tmp);
    for (const a of this.shimAddresses) {
      await Deno.remove(a.replace(/^unix:\/\//, "")).catch(() => {});
      // berth's shim keeps a lock file beside its socket.
      await Deno.remove(`${a.replace(/^unix:\/\//, "")}.lock`).catch(() => {});
    }
    await Deno.remove(this.tmp, { recursive: true });
  }

  /** Fails when anything of this world is still there (processes, mounts, sockets). */
  async assertClean(): Promise<void> {
    // A retired shim may still be exiting when the daemon's bounded wait
    // (5 s) ends; a leaked one is still there after this longer wait.
    const until = Date.now() + 15_000;
    while ((await this.shimPids()).length > 0 && Date.now() < until) {
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(await this.shimPids(), [], "no shim left");
    const shims = this.daemonShims();
    assert.deepEqual(
      shims,
      [],
      `no shim or warm spare of the daemon left: ${
        shims.map((p) => `${p}: ${readCmdline(p)?.join(" ")} (${describe(p)})`).join("; ")
      }`,
    );
    assert.deepEqual(mountsUnder(this.tmp), [], "no mount left");
    for (const a of this.shimAddresses) {
      await assert.rejects(
        Deno.lstat(a.replace(/^unix:\/\//, "")),
        Deno.errors.NotFound,
        `socket ${a} left`,
      );
    }
    let left: string[] = [];
    try {
      left = [...Deno.readDirSync(this.bundles)].map((e) => e.name);
    } catch { /* no namespace dir */ }
    assert.deepEqual(left, [], "no bundle left");
  }
}

/** Asserts `p` rejects with `code` (and a message matching `re`). */
export function rejectsWith(p: Promise<unknown>, code: Code, re?: RegExp): Promise<void> {
  return assert.rejects(p, (e) => {
    assert.ok(isCode(e, code), `expected ${Code[code]}, got ${e instanceof Error ? e.message : e}`);
    if (re) assert.match((e as Error).message, re);
    return true;
  });
}

/**
 * Runs `fn` in a new world (`before` run first, then the daemon started
 * with `config` and the base snapshot made) within `limitMs`, then stops the daemon, checks nothing is left and
 * removes everything, whatever happened; a failure carries the daemon's log.
 */
export async function withWorld(
  fn: (w: World) => Promise<void>,
  config?: string,
  limitMs = TEST_LIMIT_MS,
  before?: (w: World) => Promise<void>,
): Promise<void> {
  // Detached shims and orphaned container processes must go to tini, which
  // reaps them; a test process left a subreaper by an earlier file keeps
  // them as zombies (and runc then finds a SIGKILLed init "still running").
  assert.equal(getChildSubreaper(), false, "the test process is not a child subreaper");
  const w = await World.make(config);
  try {
    await before?.(w);
    await w.start();
    await w.makeBase();
    // A hung shim must fail the test, not hang it: the cleanup below still runs.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`timed out after ${limitMs} ms at: ${w.step}`)),
        limitMs,
      );
    });
    try {
      await Promise.race([fn(w), limit]);
    } finally {
      clearTimeout(timer);
    }
    await w.stop();
    await w.assertClean();
  } catch (err) {
    const log = w.daemon?.log() ?? "";
    throw new Error(
      `at step "${w.step}": ${err instanceof Error ? err.stack : err}\n--- daemon log ---\n${log}`,
    );
  } finally {
    await w.cleanup();
  }
}

/** berth's own shim when built (the default runtime), else Debian's runc shim. */
export async function ownRuntime(): Promise<string> {
  return await berthShimBuilt() ? "io.containerd.berth.v2" : "io.containerd.runc.v2";
}

/** True when berth's shim is built (tests using it are skipped otherwise, saying why). */
export async function berthShimBuilt(): Promise<boolean> {
  try {
    return (await Deno.stat(BERTH_SHIM)).isFile;
  } catch {
    return false;
  }
}

/** Runs the berth client against the world's daemon in its namespace. */
export async function client(w: World, args: string[]): Promise<{ code: number; out: string }> {
  const r = await run(Deno.execPath(), [
    "run",
    "-A",
    "--quiet",
    MOD,
    "-a",
    w.address,
    "-n",
    w.ns,
    ...args,
  ]);
  const dec = new TextDecoder();
  return { code: r.code, out: dec.decode(r.stdout) + dec.decode(r.stderr) };
}

/** A daemon config sharing berth's shims `size` to a shim, emptied shims idling `idle`. */
export function sharedShims(size: number, idle = "10s"): string {
  return `version = 2
[plugins."io.containerd.runtime.v2.task"]
  shim_group_size = ${size}
  shim_idle_timeout = "${idle}"
`;
}

/** Kills task `id` with SIGKILL, waits for its exit and deletes it. */
export async function killAndDelete(w: World, id: string): Promise<void> {
  const exited = w.tasks.wait({ containerId: id });
  exited.catch(() => {}); // awaited below; a failure before that must not leave it unhandled
  await w.tasks.kill({ containerId: id, signal: 9 });
  assert.equal((await exited).exitStatus, 137);
  await w.tasks.delete({ containerId: id });
}

/** The pid of the shim serving task `id` (asked of the shim at the bundle's address). */
export async function shimPidOf(w: World, id: string): Promise<number> {
  await w.rememberShim(id);
  const pid = await shimPidAt(w.shimOf.get(id)!, w.ns, id);
  assert.ok(pid !== undefined && pid > 0, `the shim of ${id} answers`);
  return pid;
}

/** Starts an exec `execId` running `args` in task `id`; resolves with its pid. */
export async function startExec(
  w: World,
  id: string,
  execId: string,
  args: string[],
): Promise<number> {
  const spec = (await w.baseSpec()).process;
  spec.args = args;
  spec.terminal = false;
  await w.tasks.exec({
    containerId: id,
    execId,
    spec: create(AnySchema, {
      typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
      value: new TextEncoder().encode(JSON.stringify(spec)),
    }),
  });
  return (await w.tasks.start({ containerId: id, execId })).pid;
}

/** A subscription to this world's TaskExit events, read into a list as they come. */
export function exitEvents(
  w: World,
): { seen: Array<{ id: string; pid: number }>; stop: () => void } {
  const abort = new AbortController();
  const seen: Array<{ id: string; pid: number }> = [];
  const stream = serviceClient(w.client!, Events).subscribe(
    { filters: [`topic=="/tasks/exit",namespace==${w.ns}`] },
    { signal: abort.signal },
  );
  (async () => {
    try {
      for await (const ev of stream) {
        const exit = fromBinary(TaskExitSchema, ev.event!.value);
        seen.push({ id: exit.id, pid: exit.pid });
      }
    } catch { /* stopped */ }
  })();
  return { seen, stop: () => abort.abort() };
}

/** Polls `ok` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function waitUntil(what: string, ok: () => boolean | Promise<boolean>, ms = 15_000) {
  const deadline = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Where a leftover process stands: its cwd and how many sockets it holds (for the failure message). */
export function describe(pid: number): string {
  try {
    const cwd = Deno.readLinkSync(`/proc/${pid}/cwd`);
    let sockets = 0;
    for (const e of Deno.readDirSync(`/proc/${pid}/fd`)) {
      if (Deno.readLinkSync(`/proc/${pid}/fd/${e.name}`).startsWith("socket:")) sockets++;
    }
    return `cwd ${cwd}, ${sockets} sockets`;
  } catch {
    return "gone";
  }
}
