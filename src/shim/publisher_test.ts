import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { BerthError, Code } from "../errdefs/mod.ts";
import { namespaceOf } from "../namespaces/mod.ts";
import { Server } from "../ttrpc/mod.ts";
import { type Envelope, Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.ts";
import { TaskExitSchema, TaskStartSchema } from "../gen/containerd/events/task_pb.ts";
import { Publisher } from "./publisher.ts";

Deno.test("publisher: events go over ttrpc Forward, in order, with namespace and containerd's type urls", async () => {
  const dir = await Deno.makeTempDir();
  const got: Envelope[] = [];
  const namespaces: (string | undefined)[] = [];
  const server = new Server();
  server.register(Events, {
    forward: (req, ctx) => {
      got.push(req.envelope!);
      namespaces.push(namespaceOf(ctx));
      return {};
    },
  });
  await server.listen(`${dir}/ttrpc.sock`);
  const pub = new Publisher({
    ttrpcAddress: `${dir}/ttrpc.sock`,
    address: "",
    publishBinary: "",
    namespace: "ns1",
  });
  try {
    for (let i = 1; i <= 50; i++) {
      pub.publish("/tasks/start", TaskStartSchema, { containerId: "c", pid: i });
    }
    pub.publish("/tasks/exit", TaskExitSchema, {
      containerId: "c",
      id: "c",
      pid: 50,
      exitStatus: 3,
    });
    await pub.close();
    assert.equal(got.length, 51);
    assert.deepEqual(
      got.slice(0, 50).map((e) => fromBinary(TaskStartSchema, e.event!.value).pid),
      Array.from({ length: 50 }, (_, i) => i + 1),
    );
    assert.equal(got[0].event!.typeUrl, "containerd.events.TaskStart");
    assert.equal(got[50].topic, "/tasks/exit");
    assert.equal(got[50].event!.typeUrl, "containerd.events.TaskExit");
    assert.equal(got[50].namespace, "ns1");
    assert.ok(got[50].timestamp);
    assert.ok(namespaces.every((n) => n === "ns1"));
    assert.equal(pub.delivered, 51);
  } finally {
    await server.shutdown({ timeoutMs: 1000 });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("publisher: runs the publish binary when there is no TTRPC_ADDRESS", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bin = `${dir}/containerd`;
    // Records its argv and the Any it gets on stdin, like `containerd publish` would receive.
    await Deno.writeTextFile(bin, `#!/bin/sh\necho "$@" >> ${dir}/args\ncat > ${dir}/event-$$\n`, {
      mode: 0o755,
    });
    const pub = new Publisher({
      ttrpcAddress: "",
      address: "/run/x.sock",
      publishBinary: bin,
      namespace: "ns2",
      retryMs: 10,
    });
    pub.publish("/tasks/exit", TaskExitSchema, {
      containerId: "c",
      id: "c",
      pid: 7,
      exitStatus: 137,
    });
    await pub.close();
    assert.equal(pub.delivered, 1);
    assert.equal(
      (await Deno.readTextFile(`${dir}/args`)).trim(),
      "--address /run/x.sock publish --topic /tasks/exit --namespace ns2",
    );
    const eventFile = [...Deno.readDirSync(dir)].find((e) => e.name.startsWith("event-"))!.name;
    const any = fromBinary(AnySchema, await Deno.readFile(`${dir}/${eventFile}`));
    assert.equal(any.typeUrl, "containerd.events.TaskExit");
    assert.equal(fromBinary(TaskExitSchema, any.value).exitStatus, 137);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("publisher: an event is kept while no daemon listens, past its attempts, and delivered once one does", async () => {
  const dir = await Deno.makeTempDir();
  const path = `${dir}/ttrpc.sock`;
  const got: Envelope[] = [];
  const server = new Server();
  server.register(Events, {
    forward: (req) => {
      got.push(req.envelope!);
      return {};
    },
  });
  const pub = new Publisher({
    ttrpcAddress: path,
    address: "",
    publishBinary: "",
    namespace: "n",
    attempts: 2,
    retryMs: 5,
    maxRetryMs: 20,
  });
  try {
    pub.publish("/tasks/exit", TaskExitSchema, { containerId: "c", id: "c", pid: 9 });
    // Well past 2 attempts at a 20 ms pause: still queued, not dropped.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(pub.dropped, 0);
    assert.equal(pub.pending, 1);
    await server.listen(path);
    const deadline = Date.now() + 5000;
    while (got.length === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(got.length, 1);
    assert.equal(fromBinary(TaskExitSchema, got[0].event!.value).pid, 9);
    assert.equal(pub.delivered, 1);
  } finally {
    await pub.close();
    await server.shutdown({ timeoutMs: 1000 });
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("publisher: an event the daemon refuses is dropped after its attempts, not retried forever", async () => {
  const dir = await Deno.makeTempDir();
  let calls = 0;
  const server = new Server();
  server.register(Events, {
    forward: () => {
      calls++;
      throw new BerthError(Code.Internal, "refused");
    },
  });
  await server.listen(`${dir}/ttrpc.sock`);
  const pub = new Publisher({
    ttrpcAddress: `${dir}/ttrpc.sock`,
    address: "",
    publishBinary: "",
    namespace: "n",
    attempts: 2,
    retryMs: 5,
  });
  try {
    pub.publish("/tasks/start", TaskStartSchema, { containerId: "c", pid: 1 });
    const deadline = Date.now() + 5000;
    while (pub.dropped === 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(pub.dropped, 1);
    assert.equal(pub.delivered, 0);
    assert.equal(calls, 2);
  } finally {
    await pub.close();
    await server.shutdown({ timeoutMs: 1000 });
    await Deno.remove(dir, { recursive: true });
  }
});
