import assert from "node:assert/strict";
import { create, fromBinary } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, isCode } from "../errdefs/mod.ts";
import { ContainerCreateSchema } from "../gen/containerd/events/container_pb.ts";
import { NamespaceCreateSchema } from "../gen/containerd/events/namespace_pb.ts";
import { TaskExitSchema } from "../gen/containerd/events/task_pb.ts";
import { adaptEnvelope, type Envelope, Exchange, packEvent, Topic } from "./mod.ts";

function nsCreate(name: string, labels: Record<string, string> = {}) {
  return create(NamespaceCreateSchema, { name, labels });
}

Deno.test("events: subscribers get what passes their filters, in order", async () => {
  const ex = new Exchange();
  const all = ex.subscribe();
  const ns = ex.subscribe(['topic~="^/namespaces/"']);
  const labelled = ex.subscribe(['event.labels."team.name"==infra', "namespace==other"]);
  ex.publish("default", Topic.NamespaceCreate, NamespaceCreateSchema, nsCreate("a"));
  ex.publish(
    "default",
    Topic.NamespaceCreate,
    NamespaceCreateSchema,
    nsCreate("b", { "team.name": "infra" }),
  );
  ex.publish(
    "other",
    Topic.TaskExit,
    TaskExitSchema,
    create(TaskExitSchema, { containerId: "c1", exitStatus: 3 }),
  );
  const take = async (it: AsyncIterableIterator<Envelope>, n: number) => {
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      const { value } = await it.next();
      out.push(`${value!.namespace}${value!.topic}`);
    }
    return out;
  };
  assert.deepEqual(await take(all, 3), [
    "default/namespaces/create",
    "default/namespaces/create",
    "other/tasks/exit",
  ]);
  assert.deepEqual(await take(ns, 2), ["default/namespaces/create", "default/namespaces/create"]);
  assert.deepEqual(await take(labelled, 2), ["default/namespaces/create", "other/tasks/exit"]);
  assert.equal(ex.subscribers, 3);
  await all.return!();
  assert.equal(ex.subscribers, 2);
  ex.close();
  assert.deepEqual(await ns.next(), { value: undefined, done: true });
  assert.deepEqual(await labelled.next(), { value: undefined, done: true });
});

Deno.test("events: envelopes carry containerd's bare type URLs and decode", () => {
  const any = packEvent(TaskExitSchema, create(TaskExitSchema, { containerId: "c1", pid: 42 }));
  assert.equal(any.typeUrl, "containerd.events.TaskExit");
  assert.equal(fromBinary(TaskExitSchema, any.value).pid, 42);
  const env: Envelope = {
    timestamp: timestampFromMs(1),
    namespace: "n",
    topic: "/tasks/exit",
    event: any,
  };
  const a = adaptEnvelope(env);
  assert.equal(a(["event", "container_id"]), "c1");
  assert.equal(a(["event", "pid"]), "42");
  assert.equal(a(["event", "nope"]), undefined);
  assert.equal(a(["namespace"]), "n");
  const cc = packEvent(
    ContainerCreateSchema,
    create(ContainerCreateSchema, { id: "x", runtime: { name: "io.containerd.runc.v2" } }),
  );
  assert.equal(
    adaptEnvelope({ ...env, event: cc })(["event", "runtime", "name"]),
    "io.containerd.runc.v2",
  );
  const unknown = { ...env, event: { ...any, typeUrl: "example.Unknown" } };
  assert.equal(adaptEnvelope(unknown)(["event", "container_id"]), undefined);
});

Deno.test("events: abort ends a waiting subscriber; bad input is rejected with the right code", async () => {
  const ex = new Exchange();
  const ctl = new AbortController();
  const sub = ex.subscribe([], ctl.signal);
  const pending = sub.next();
  ctl.abort();
  assert.deepEqual(await pending, { value: undefined, done: true });
  assert.equal(ex.subscribers, 0);
  assert.throws(() => ex.subscribe(["topic=="]), (e) => isCode(e, Code.InvalidArgument));
  const ev = nsCreate("a");
  assert.throws(
    () => ex.publish("", "/x", NamespaceCreateSchema, ev),
    (e) => isCode(e, Code.FailedPrecondition),
  );
  assert.throws(
    () => ex.publish("a/b", "/x", NamespaceCreateSchema, ev),
    (e) => isCode(e, Code.InvalidArgument),
  );
  for (const t of ["", "x", "/", "/a//b", "/../x"]) {
    assert.throws(
      () => ex.publish("n", t, NamespaceCreateSchema, ev),
      (e) => isCode(e, Code.InvalidArgument),
      t,
    );
  }
  const event = packEvent(NamespaceCreateSchema, ev);
  assert.throws(
    () => ex.forward({ timestamp: timestampFromMs(0), namespace: "n", topic: "/x", event }),
    /must carry a timestamp/,
  );
  assert.throws(
    () => ex.forward({ timestamp: timestampFromMs(5), namespace: "", topic: "/x", event }),
    /no namespace/,
  );
  ex.forward({ timestamp: timestampFromMs(5), namespace: "n", topic: "/x", event });
  ex.close();
});

Deno.test("events: a subscriber that falls too far behind is dropped with ResourceExhausted", async () => {
  const ex = new Exchange({ maxPending: 2 });
  const sub = ex.subscribe();
  for (let i = 0; i < 4; i++) ex.publish("n", "/x", NamespaceCreateSchema, nsCreate(`a${i}`));
  assert.equal(ex.subscribers, 0);
  assert.equal((await sub.next()).done, false);
  assert.equal((await sub.next()).done, false);
  await assert.rejects(sub.next(), (e) => isCode(e, Code.ResourceExhausted));
  assert.deepEqual(await sub.next(), { value: undefined, done: true });
});
