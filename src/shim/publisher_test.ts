import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
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

Deno.test("publisher: falls back to the publish binary when ttrpc fails", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const bin = `${dir}/containerd`;
    // Records its argv and the Any it gets on stdin, like `containerd publish` would receive.
    await Deno.writeTextFile(bin, `#!/bin/sh\necho "$@" >> ${dir}/args\ncat > ${dir}/event-$$\n`, {
      mode: 0o755,
    });
    const pub = new Publisher({
      ttrpcAddress: `${dir}/nobody-listens`,
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

Deno.test("publisher: an event that cannot go anywhere is dropped after its attempts, not retried forever", async () => {
  const pub = new Publisher({
    ttrpcAddress: "/nonexistent/sock",
    address: "",
    publishBinary: "",
    namespace: "n",
    attempts: 2,
    retryMs: 5,
  });
  pub.publish("/tasks/start", TaskStartSchema, { containerId: "c", pid: 1 });
  await pub.close();
  assert.equal(pub.dropped, 1);
  assert.equal(pub.delivered, 0);
});
