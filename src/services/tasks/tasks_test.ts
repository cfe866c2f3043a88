import assert from "node:assert/strict";
import { BerthError, Code, isCode, notFound } from "../../errdefs/mod.ts";
import type { CreateTaskOptions, ShimTask } from "../../runtime/mod.ts";
import { callIn, type Fixture, handlersOf, unary, withFixture } from "../testutil.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { type TaskSource, TasksService, tasksService } from "./mod.ts";

const SPEC = {
  typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec",
  value: new TextEncoder().encode("{}"),
};
const RUNTIME = { name: "io.containerd.runc.v2" };
const code = (c: Code) => (e: unknown) => isCode(e, c);

/** The shim calls a fake task answers, by method; anything else is an error. */
type ShimCalls = Record<string, (req: Record<string, unknown>, opts?: unknown) => unknown>;

/** A task whose shim answers with `calls` (and records what it was asked). */
function fakeTask(id: string, calls: ShimCalls, seen: string[] = []): ShimTask {
  const task = new Proxy({}, {
    get: (_, method: string) => (req: Record<string, unknown>, opts?: unknown) => {
      seen.push(`${method} ${JSON.stringify(req)}`);
      const answer = calls[method];
      if (answer === undefined) throw new Error(`unexpected shim call ${method}`);
      return Promise.resolve().then(() => answer(req, opts));
    },
  });
  // Only id and task are read by the service; the rest is the manager's.
  return { namespace: "ns1", id, task } as unknown as ShimTask;
}

/** A task manager holding `tasks`, recording the creates it is asked for. */
function fakeManager(tasks: ShimTask[], created: CreateTaskOptions[] = []): TaskSource {
  return {
    get(_ns: string, id: string) {
      const t = tasks.find((x) => x.id === id);
      if (t === undefined) throw notFound(`task ${id}`);
      return t;
    },
    list: () => tasks,
    create(_ns: string, id: string, opts: CreateTaskOptions) {
      created.push(opts);
      return Promise.resolve({ task: fakeTask(id, {}), pid: 4242 });
    },
    delete: () => Promise.reject(new Error("not used by these tests")),
  };
}

function handlers(f: Fixture, manager: TaskSource) {
  return handlersOf(
    tasksService(manager, f.md, new Map([["native", f.native]])),
    "containerd.services.tasks.v1.Tasks",
  );
}

Deno.test("tasks: namespace and ids are checked before any shim is asked", () =>
  withFixture(async (f) => {
    const seen: string[] = [];
    const h = handlers(f, fakeManager([fakeTask("c1", {}, seen)]));
    await assert.rejects(
      unary(h, "start", { containerId: "c1" }, callIn()),
      code(Code.FailedPrecondition),
    );
    await assert.rejects(unary(h, "start", { containerId: "" }, callIn("ns1")), /id is required/);
    await assert.rejects(
      unary(h, "deleteProcess", { containerId: "c1", execId: "" }, callIn("ns1")),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "exec", { containerId: "c1", execId: "e1" }, callIn("ns1")),
      /process spec is required/,
    );
    await assert.rejects(
      unary(h, "kill", { containerId: "nope" }, callIn("ns1")),
      code(Code.NotFound),
    );
    assert.deepEqual(seen, []);
  }));

Deno.test("tasks: create takes the container's spec, runtime and snapshot mounts", () =>
  withFixture(async (f) => {
    const created: CreateTaskOptions[] = [];
    const h = handlers(f, fakeManager([], created));
    await f.md.snapshotter(f.native).prepare("ns1", "snap1");
    f.md.containers.create("ns1", {
      id: "bad",
      runtime: RUNTIME,
      spec: { typeUrl: "x", value: SPEC.value },
    });
    f.md.containers.create("ns1", {
      id: "c1",
      runtime: RUNTIME,
      spec: SPEC,
      snapshotter: "native",
      snapshotKey: "snap1",
    });
    f.md.containers.create("ns1", {
      id: "c2",
      runtime: RUNTIME,
      spec: SPEC,
      snapshotter: "zfs",
      snapshotKey: "k",
    });
    await assert.rejects(
      unary(h, "create", { containerId: "bad" }, callIn("ns1")),
      /not an OCI runtime spec/,
    );
    await assert.rejects(
      unary(h, "create", { containerId: "c2" }, callIn("ns1")),
      /snapshotter not loaded: zfs/,
    );
    await assert.rejects(
      unary(h, "create", { containerId: "c1" }, callIn("ns2")),
      code(Code.NotFound),
    );
    assert.equal(created.length, 0);
    const r = await unary<{ pid: number }>(
      h,
      "create",
      { containerId: "c1", stdout: "/o" },
      callIn("ns1"),
    );
    assert.equal(r.pid, 4242);
    assert.equal(created.length, 1);
    assert.equal(created[0].runtime, RUNTIME.name);
    assert.equal(created[0].stdout, "/o");
    assert.equal(created[0].rootfs.length, 1, "the snapshot's mounts, as none were sent");
    assert.deepEqual(created[0].spec, SPEC.value);
  }));

Deno.test("tasks: list leaves out tasks whose shim is gone and applies the filter", () =>
  withFixture(async (f) => {
    const state = (pid: number) => () => ({ id: "", pid, status: 2 });
    const gone = () => {
      throw new BerthError(Code.Unavailable, "ttrpc: connection closed");
    };
    const tasks = [
      fakeTask("a", { state: state(11) }),
      fakeTask("b", { state: gone }),
      fakeTask("c", { state: state(13) }),
    ];
    const h = handlers(f, fakeManager(tasks));
    const all = await unary<{ tasks: { containerId: string; pid: number }[] }>(
      h,
      "list",
      {},
      callIn("ns1"),
    );
    assert.deepEqual(all.tasks.map((t) => [t.containerId, t.pid]), [["a", 11], ["c", 13]]);
    const one = await unary<{ tasks: { containerId: string }[] }>(
      h,
      "list",
      { filter: "pid==13" },
      callIn("ns1"),
    );
    assert.deepEqual(one.tasks.map((t) => t.containerId), ["c"]);
    const broken = handlers(
      f,
      fakeManager([fakeTask("x", {
        state: () => {
          throw new Error("boom");
        },
      })]),
    );
    await assert.rejects(unary(broken, "list", {}, callIn("ns1")), /boom/);
  }));

Deno.test("tasks: calls reach the task's shim with its id; checkpoint says what is missing", () =>
  withFixture(async (f) => {
    const seen: string[] = [];
    let waitSignal: unknown;
    const t = fakeTask("c1", {
      start: () => ({ pid: 77 }),
      kill: () => ({}),
      wait: (_req, opts) => {
        waitSignal = (opts as { signal?: AbortSignal }).signal;
        return { exitStatus: 3 };
      },
      checkpoint: () => ({}),
    }, seen);
    const h = handlers(f, fakeManager([t]));
    const ctx = callIn("ns1");
    assert.deepEqual(await unary(h, "start", { containerId: "c1", execId: "e1" }, ctx), {
      pid: 77,
    });
    await unary(h, "kill", { containerId: "c1", signal: 9, all: true }, ctx);
    const w = await unary<{ exitStatus: number }>(h, "wait", { containerId: "c1" }, ctx);
    assert.equal(w.exitStatus, 3);
    assert.equal(waitSignal, ctx.signal, "a cancelled Wait stops waiting on the shim");
    await assert.rejects(
      unary(h, "checkpoint", { containerId: "c1" }, ctx),
      (e) =>
        isCode(e, Code.FailedPrecondition) && /cannot yet store checkpoint images/.test(String(e)),
    );
    assert.deepEqual(seen.map((s) => s.split(" ")[0]), ["start", "kill", "wait", "checkpoint"]);
    assert.match(seen[0], /"id":"c1","execId":"e1"/);
    assert.match(seen[1], /"signal":9,"all":true/);
  }));

Deno.test("tasks: every method of containerd's Tasks service has a handler", () => {
  const proto = TasksService.prototype as unknown as Record<string, unknown>;
  const missing = Tasks.methods.filter((m) => typeof proto[m.localName] !== "function");
  assert.deepEqual(missing.map((m) => m.name), []);
});
