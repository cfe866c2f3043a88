import assert from "node:assert/strict";
import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { Code, isCode } from "../../errdefs/mod.ts";
import { packEvent } from "../../events/mod.ts";
import { TaskExitSchema } from "../../gen/containerd/events/task_pb.ts";
import { callIn, handlersOf, unary, withFixture } from "../testutil.ts";
import { eventsService } from "./mod.ts";

const code = (c: Code) => (e: unknown) => isCode(e, c);

Deno.test("events service: publish, forward (both APIs), subscribe with filters", () =>
  withFixture(async ({ events }) => {
    const svc = eventsService(events);
    const h = handlersOf(svc, "containerd.services.events.v1.Events");
    const shim = handlersOf(svc, "containerd.services.events.ttrpc.v1.Events");
    assert.throws(
      () => handlersOf(svc, "containerd.services.events.ttrpc.v1.Events", "grpc"),
      /not registered/,
    );
    const ctl = new AbortController();
    const sub = (h.subscribe({ filters: ["event.container_id==c1"] }, {
      ...callIn("x"),
      signal: ctl.signal,
    }) as AsyncIterable<
      { topic: string; namespace: string }
    >)[Symbol.asyncIterator]();
    const exit = (id: string) =>
      packEvent(TaskExitSchema, create(TaskExitSchema, { containerId: id, exitStatus: 3 }));
    await unary(h, "publish", { topic: "/tasks/exit", event: exit("c1") }, callIn("ns1"));
    await unary(h, "publish", { topic: "/tasks/exit", event: exit("c2") }, callIn("ns1"));
    await unary(shim, "forward", {
      envelope: {
        timestamp: timestampFromMs(5),
        namespace: "ns2",
        topic: "/tasks/exit",
        event: exit("c1"),
      },
    }, callIn());
    await unary(h, "forward", {
      envelope: {
        timestamp: timestampFromMs(6),
        namespace: "ns3",
        topic: "/tasks/exit",
        event: exit("c1"),
      },
    }, callIn());
    const got = [];
    for (let i = 0; i < 3; i++) {
      const { value } = await sub.next();
      got.push(`${value.namespace}${value.topic}`);
    }
    assert.deepEqual(got, ["ns1/tasks/exit", "ns2/tasks/exit", "ns3/tasks/exit"]);
    ctl.abort();
    assert.equal((await sub.next()).done, true, "the stream ends when the call is cancelled");
    assert.equal(events.subscribers, 0);

    await assert.rejects(
      unary(h, "publish", { topic: "/x", event: exit("c") }, callIn()),
      code(Code.FailedPrecondition),
    );
    await assert.rejects(
      unary(h, "publish", { topic: "x", event: exit("c") }, callIn("n")),
      code(Code.InvalidArgument),
    );
    await assert.rejects(
      unary(h, "publish", { topic: "/x" }, callIn("n")),
      code(Code.InvalidArgument),
    );
    await assert.rejects(unary(shim, "forward", {}, callIn()), code(Code.InvalidArgument));
    await assert.rejects(
      unary(
        shim,
        "forward",
        { envelope: { namespace: "n", topic: "/x", event: exit("c") } },
        callIn(),
      ),
      (e) => code(Code.InvalidArgument)(e) && /timestamp/.test(String(e)),
    );
  }));
