/**
 * berth's ttrpc against peers nobody here wrote: Debian's
 * containerd-shim-runc-v2 (a Go ttrpc server, and through its event
 * publisher a Go ttrpc client), a real containerd (whose ttrpc Events
 * service berth forwards an event to, seen by `ctr events`), and a Python
 * peer running as another user (refused by the SO_PEERCRED check).
 */
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { startRuncShim } from "../bench/ttrpc.ts";
import { BerthError, Code } from "../src/errdefs/mod.ts";
import { TaskCreateSchema, TaskExitSchema } from "../src/gen/containerd/events/task_pb.ts";
import { type Envelope, Events } from "../src/gen/containerd/services/events/ttrpc/v1/events_pb.ts";
import { Task } from "../src/gen/containerd/task/v2/shim_pb.ts";
import { RequestSchema } from "../src/gen/ttrpc/request_pb.ts";
import { run, spawn } from "../src/spawn/mod.ts";
import { namespaceOf, TTRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import { connect, sameUserOnly, Server, serviceClient } from "../src/ttrpc/mod.ts";
import { makeBundle } from "./support/bundle.ts";
import { startContainerd } from "./support/containerd.ts";
import { findProcesses, isAlive } from "./support/proc.ts";

function isCode(code: Code) {
  return (e: unknown) => {
    assert.ok(e instanceof BerthError, `expected a BerthError, got ${e}`);
    assert.equal(Code[e.code], Code[code], e.message);
    return true;
  };
}

async function waitFor(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

Deno.test("berth's client drives Debian's containerd-shim-runc-v2: Connect, State, Shutdown", async () => {
  const shim = await startRuncShim();
  const client = await connect(shim.socket);
  try {
    const task = serviceClient(client, Task, {
      defaults: { timeoutMs: 5000, metadata: { [TTRPC_NAMESPACE_KEY]: shim.namespace } },
    });
    const c = await task.connect({ id: shim.id });
    assert.equal(c.shimPid, shim.nsPid, "Connect reports the serving process");
    assert.equal(c.taskPid, 0, "no task yet");

    // State of an id the shim does not know: the Go server's NotFound, code and message.
    await assert.rejects(task.state({ id: "no-such-task" }), (e: unknown) => {
      isCode(Code.NotFound)(e);
      assert.match((e as Error).message, /not found/);
      return true;
    });

    // Many calls in flight on one connection, all answered by the Go server.
    const many = await Promise.allSettled(
      Array.from({ length: 200 }, (_, i) => task.state({ id: `missing-${i}` })),
    );
    assert.ok(
      many.every((r) => r.status === "rejected" && (r.reason as BerthError).code === Code.NotFound),
    );
    // A method the Go server does not have.
    await assert.rejects(
      client.call("containerd.task.v2.Task", "NoSuchMethod", new Uint8Array()),
      isCode(Code.Unimplemented),
    );

    // Shutdown: the shim may close the connection before its answer goes
    // out (containerd ignores that case too), so either outcome is fine.
    try {
      await task.shutdown({ id: shim.id });
    } catch (e) {
      isCode(Code.Unavailable)(e);
    }
    await waitFor("the shim to exit", () => !isAlive(shim.pid));
    await client.done; // the server side of the connection is gone
    assert.ok(client.closed);
  } finally {
    client.close();
    await shim.stop();
  }
  assert.equal(isAlive(shim.pid), false);
  assert.deepEqual(findProcesses((_p, argv) => argv.some((a) => a.includes(shim.id))), []);
  await assert.rejects(Deno.lstat(shim.socket), Deno.errors.NotFound);
});

Deno.test("berth forwards a TaskExit event to a real containerd over ttrpc; ctr events sees it", async () => {
  const ctd = await startContainerd();
  let watcher: Deno.ChildProcess | undefined;
  let client;
  try {
    watcher = spawn("ctr", ["--address", ctd.address, "events"], {
      stdout: "piped",
      stderr: "null",
    });
    const out = watcher.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    const reading = (async () => {
      for (;;) {
        const { value, done } = await out.read();
        if (done) return;
        seen += value;
      }
    })();

    client = await connect(ctd.ttrpcAddress);
    const events = serviceClient(client, Events);
    const containerId = `berth-exit-${crypto.randomUUID().slice(0, 8)}`;
    const exit = create(TaskExitSchema, {
      containerId,
      id: containerId,
      pid: 4242,
      exitStatus: 7,
      exitedAt: timestampFromDate(new Date()),
    });
    const forward = () =>
      events.forward({
        envelope: {
          timestamp: timestampFromDate(new Date()),
          namespace: ctd.namespace,
          topic: "/tasks/exit",
          // containerd resolves events by their proto name, without a URL prefix.
          event: create(AnySchema, {
            typeUrl: "containerd.events.TaskExit",
            value: toBinary(TaskExitSchema, exit),
          }),
        },
      }, { timeoutMs: 5000 });

    // ctr subscribes asynchronously: forward until it shows up (each forward is accepted).
    const deadline = Date.now() + 15_000;
    while (!seen.includes(containerId)) {
      assert.ok(Date.now() < deadline, `ctr events never showed the event; it printed:\n${seen}`);
      await forward();
      await new Promise((r) => setTimeout(r, 200));
    }
    const line = seen.split("\n").find((l) => l.includes(containerId))!;
    assert.match(line, new RegExp(`${ctd.namespace} /tasks/exit`));
    assert.match(line, /"exit_status":7/);
    assert.match(line, /"pid":4242/);

    // A malformed event (a topic containerd refuses) comes back as an error, not a hang.
    await assert.rejects(
      events.forward({ envelope: { namespace: ctd.namespace, topic: "no-leading-slash" } }, {
        timeoutMs: 5000,
      }),
      (e: unknown) => e instanceof BerthError && e.code !== Code.OK,
    );

    Deno.kill(watcher.pid, "SIGTERM");
    await watcher.status;
    await reading;
  } finally {
    client?.close();
    if (watcher) {
      try {
        Deno.kill(watcher.pid, "SIGKILL");
      } catch { /* already gone */ }
      await watcher.status;
    }
    await ctd.stop();
  }
});

Deno.test("a Go ttrpc client (the runc shim's event publisher) calls berth's server", async () => {
  // berth plays containerd's ttrpc side: the shim forwards its task events here.
  const dir = await Deno.makeTempDir({ prefix: "berth-events-" });
  const received: Array<{ envelope: Envelope; namespace: string | undefined }> = [];
  const server = new Server();
  server.register(Events, {
    forward(req, ctx) {
      received.push({ envelope: req.envelope!, namespace: namespaceOf(ctx) });
      return {};
    },
  });
  await server.listen(`${dir}/events.sock`);
  const shim = await startRuncShim({
    ttrpcAddress: `${dir}/events.sock`,
    prepareBundle: (b) => makeBundle(b, { args: ["true"] }),
  });
  const client = await connect(shim.socket);
  try {
    const task = serviceClient(client, Task, {
      defaults: { timeoutMs: 20_000, metadata: { [TTRPC_NAMESPACE_KEY]: shim.namespace } },
    });
    const created = await task.create({ id: shim.id, bundle: shim.bundle });
    assert.ok(created.pid > 0);
    await task.start({ id: shim.id });
    const waited = await task.wait({ id: shim.id });
    assert.equal(waited.exitStatus, 0);
    await task.delete({ id: shim.id });

    const topics = () => received.map((r) => r.envelope.topic);
    await waitFor(
      "the shim's events",
      () =>
        ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"].every((t) =>
          topics().includes(t)
        ),
    );
    for (const r of received) {
      assert.equal(r.namespace, shim.namespace, "the Go client's namespace metadata arrives");
      assert.equal(r.envelope.namespace, shim.namespace);
    }
    const byTopic = (t: string) => received.find((r) => r.envelope.topic === t)!.envelope.event!;
    assert.equal(byTopic("/tasks/create").typeUrl, "containerd.events.TaskCreate");
    assert.equal(fromBinary(TaskCreateSchema, byTopic("/tasks/create").value).containerId, shim.id);
    const exit = fromBinary(TaskExitSchema, byTopic("/tasks/exit").value);
    assert.deepEqual([exit.containerId, exit.exitStatus, exit.pid], [shim.id, 0, created.pid]);

    try {
      await task.shutdown({ id: shim.id });
    } catch (e) {
      isCode(Code.Unavailable)(e);
    }
    await waitFor("the shim to exit", () => !isAlive(shim.pid));
  } finally {
    client.close();
    await shim.stop();
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
  assert.deepEqual(findProcesses((_p, argv) => argv.some((a) => a.includes(shim.id))), []);
});

// A minimal ttrpc peer in Python: sends one Request frame, reports the answer or a hang-up.
const PY_PEER = `
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
s.connect(sys.argv[1])
req = bytes.fromhex(sys.argv[2])
try:
    s.sendall(struct.pack(">IIBB", len(req), 1, 1, 0) + req)
    data = s.recv(4096)
except (BrokenPipeError, ConnectionResetError):
    data = b""  # the server hung up first
# A refusal with PermissionDenied is an answer whose status (field 1) has code 7.
denied = len(data) >= 14 and data[10] == 0x0a and data[12] == 0x08 and data[13] == 7
print("denied" if denied else "answered" if len(data) >= 10 else "closed")
`;

Deno.test("SO_PEERCRED same-user check: a peer running as another uid is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-peercred-" });
  const sock = `${dir}/s.sock`;
  const server = new Server({ authorize: sameUserOnly() });
  server.register(Events, { forward: () => ({}) });
  await server.listen(sock);
  try {
    // Open the socket to everyone so the other user reaches the credential check.
    await Deno.chmod(dir, 0o755);
    await Deno.chmod(sock, 0o666);
    const req = toBinary(
      RequestSchema,
      create(RequestSchema, {
        service: "containerd.services.events.ttrpc.v1.Events",
        method: "Forward",
      }),
    );
    const hex = [...req].map((b) => b.toString(16).padStart(2, "0")).join("");
    const peer = (asNobody: boolean) =>
      run(
        asNobody ? "setpriv" : "/usr/bin/python3",
        asNobody
          ? [
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            PY_PEER,
            sock,
            hex,
          ]
          : ["-c", PY_PEER, sock, hex],
      );
    const said = (r: { stdout: Uint8Array; stderr: Uint8Array }) => {
      const text = (b: Uint8Array) => new TextDecoder().decode(b).trim();
      return { out: text(r.stdout), why: `stdout: ${text(r.stdout)}; stderr: ${text(r.stderr)}` };
    };
    const same = said(await peer(false));
    assert.equal(same.out, "answered", same.why);
    const other = said(await peer(true));
    assert.equal(other.out, "denied", other.why);
    // berth's own client (same process, same uid) is still served.
    const client = await connect(sock);
    try {
      await serviceClient(client, Events).forward({ envelope: { topic: "/x" } });
    } finally {
      client.close();
    }
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
