/**
 * `berth daemon` as a process: started from source on temporary root, state
 * and address, driven over ttrpc with containerd's v1 services, refused a
 * second time on the same root, and stopped with SIGTERM, leaving nothing.
 */
import { TTRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import assert from "node:assert/strict";
import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { Code, isCode } from "../src/errdefs/mod.ts";
import { NamespaceCreateSchema } from "../src/gen/containerd/events/namespace_pb.ts";
import { TaskExitSchema } from "../src/gen/containerd/events/task_pb.ts";
import { Content, WriteAction } from "../src/gen/containerd/services/content/v1/content_pb.ts";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.ts";
import { Leases } from "../src/gen/containerd/services/leases/v1/leases_pb.ts";
import { Snapshots } from "../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { digestOf } from "../src/content/mod.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Events } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import { Introspection } from "../src/gen/containerd/services/introspection/v1/introspection_pb.ts";
import { Namespaces } from "../src/gen/containerd/services/namespaces/v1/namespaces_pb.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { spawn } from "../src/spawn/mod.ts";
import { type Client, connect, serviceClient } from "../src/ttrpc/mod.ts";
import { VERSION } from "../src/version.ts";
import { daemonAt, spawnDaemon as startDaemon, waitForSocket } from "./support/daemon.ts";

const MOD = new URL("../mod.ts", import.meta.url).pathname;
const NS_KEY = TTRPC_NAMESPACE_KEY;

function rejectsWith(p: Promise<unknown>, code: Code, re?: RegExp): Promise<void> {
  return assert.rejects(p, (e) => {
    assert.ok(isCode(e, code), `expected ${Code[code]}, got ${e instanceof Error ? e.message : e}`);
    if (re) assert.match((e as Error).message, re);
    return true;
  });
}

Deno.test("daemon: serves containerd's v1 services over ttrpc, refuses a second daemon, stops cleanly", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-daemon-test-" });
  const root = `${tmp}/root`;
  const state = `${tmp}/state`;
  const address = `${tmp}/state/berth.sock`;
  const ttrpc = `${address}.ttrpc`;
  const daemon = startDaemon([
    "--root",
    root,
    "--state",
    state,
    "--address",
    address,
    "--log-level",
    "debug",
  ]);
  let client: Client | undefined;
  try {
    await waitForSocket(ttrpc, daemon);
    assert.equal((await Deno.lstat(ttrpc)).mode! & 0o777, 0o600, "socket is 0600");
    assert.equal((await Deno.stat(root)).mode! & 0o777, 0o700, "root is 0700");
    assert.equal((await Deno.stat(state)).mode! & 0o777, 0o711, "state is 0711");

    client = await connect(ttrpc);
    const inNs = (ns: string) => ({ defaults: { metadata: { [NS_KEY]: ns }, timeoutMs: 10_000 } });

    // Version and introspection.
    const version = await serviceClient(client, Version, inNs("default")).version({});
    assert.equal(version.version, VERSION);
    const intro = serviceClient(client, Introspection, inNs("default"));
    const { plugins } = await intro.plugins({});
    const status = Object.fromEntries(
      plugins.map((p) => [`${p.type}.${p.id}`, p.initErr ? `error: ${p.initErr.message}` : "ok"]),
    );
    for (
      const uri of [
        "io.containerd.event.v1.exchange",
        "io.containerd.metadata.v1.sqlite",
        "io.containerd.content.v1.content",
        "io.containerd.grpc.v1.namespaces",
        "io.containerd.grpc.v1.containers",
      ]
    ) {
      assert.equal(status[uri], "ok", `${uri}: ${status[uri]}`);
    }
    const grpcOnly = await intro.plugins({ filters: ["type==io.containerd.grpc.v1"] });
    assert.ok(
      grpcOnly.plugins.length >= 4 &&
        grpcOnly.plugins.every((p) => p.type === "io.containerd.grpc.v1"),
    );
    const uuid = (await intro.server({})).uuid;
    assert.match(uuid, /^[0-9a-f-]{36}$/);
    assert.equal((await intro.server({})).uuid, uuid, "uuid is stable");

    // An event subscription sees the namespace being created.
    const events = serviceClient(client, Events, inNs("default"));
    const sub = events.subscribe({ filters: ['topic=="/namespaces/create"'] })
      [Symbol.asyncIterator]();
    const firstEvent = sub.next();

    // Namespaces.
    const namespaces = serviceClient(client, Namespaces, inNs("default"));
    await namespaces.create({ namespace: { name: "itest", labels: { team: "infra" } } });
    await rejectsWith(namespaces.create({ namespace: { name: "itest" } }), Code.AlreadyExists);
    await rejectsWith(namespaces.create({ namespace: { name: "../up" } }), Code.InvalidArgument);
    const listed = await namespaces.list({});
    assert.ok(listed.namespaces.some((n) => n.name === "itest" && n.labels.team === "infra"));
    const updated = await namespaces.update({
      namespace: { name: "itest", labels: { owner: "me" } },
      updateMask: { paths: ["labels.owner"] },
    });
    assert.deepEqual(updated.namespace?.labels, { team: "infra", owner: "me" });
    assert.equal((await namespaces.get({ name: "itest" })).namespace?.name, "itest");
    await rejectsWith(namespaces.get({ name: "nope" }), Code.NotFound);

    const ev = await firstEvent;
    assert.equal(ev.done, false);
    assert.equal(ev.value!.topic, "/namespaces/create");
    assert.equal(ev.value!.namespace, "default");
    assert.equal(ev.value!.event?.typeUrl, "containerd.events.NamespaceCreate");
    assert.equal(fromBinary(NamespaceCreateSchema, ev.value!.event!.value).name, "itest");
    await sub.return?.();

    // Containers, in the new namespace.
    const containers = serviceClient(client, Containers, inNs("itest"));
    const spec = {
      typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Spec",
      value: new TextEncoder().encode("{}"),
    };
    const c = (id: string, labels: Record<string, string>) => ({
      container: {
        id,
        labels,
        image: "docker.io/library/busybox:latest",
        runtime: { name: "io.containerd.runc.v2" },
        spec,
      },
    });
    const made = await containers.create(c("web", { app: "web" }));
    assert.equal(made.container?.id, "web");
    assert.ok(made.container?.createdAt !== undefined);
    await containers.create(c("db", { app: "db" }));
    await rejectsWith(containers.create(c("web", {})), Code.AlreadyExists);
    await rejectsWith(containers.create(c("../etc", {})), Code.InvalidArgument);
    await rejectsWith(containers.create(c("a/b", {})), Code.InvalidArgument);
    await rejectsWith(containers.get({ id: "nope" }), Code.NotFound);
    const got = await containers.get({ id: "web" });
    assert.equal(got.container?.runtime?.name, "io.containerd.runc.v2");
    assert.equal(new TextDecoder().decode(got.container?.spec?.value), "{}");
    const dbOnly = await containers.list({ filters: ["labels.app==db"] });
    assert.deepEqual(dbOnly.containers.map((x) => x.id), ["db"]);
    const all = await containers.list({});
    assert.deepEqual(all.containers.map((x) => x.id), ["db", "web"]);
    const streamed: string[] = [];
    for await (const m of containers.listStream({ filters: ['id~="^w"'] })) {
      streamed.push(m.container!.id);
    }
    assert.deepEqual(streamed, ["web"]);
    const relabelled = await containers.update({
      container: { id: "web", labels: { tier: "front" } },
      updateMask: { paths: ["labels.tier"] },
    });
    assert.deepEqual(relabelled.container?.labels, { app: "web", tier: "front" });
    await rejectsWith(
      containers.update({ container: { id: "web" }, updateMask: { paths: ["runtime"] } }),
      Code.InvalidArgument,
    );
    // No namespace on the call: containerd refuses with FailedPrecondition.
    await rejectsWith(
      serviceClient(client, Containers).list({}),
      Code.FailedPrecondition,
      /namespace is required/,
    );

    // A shim's event, through `berth publish` (containerd's argv shape), reaches subscribers.
    const exits = events.subscribe({ filters: ['topic=="/tasks/exit"'] })[Symbol.asyncIterator]();
    const firstExit = exits.next();
    const exit = create(TaskExitSchema, { containerId: "web", pid: 42, exitStatus: 3 });
    const any = create(AnySchema, {
      typeUrl: "containerd.events.TaskExit",
      value: toBinary(TaskExitSchema, exit),
    });
    const pub = spawn(Deno.execPath(), [
      "run",
      "-A",
      "--quiet",
      MOD,
      "--address",
      address,
      "publish",
      "--topic",
      "/tasks/exit",
      "--namespace",
      "itest",
    ], { stdin: "piped", stdout: "null", stderr: "piped" });
    const w = pub.stdin.getWriter();
    await w.write(toBinary(AnySchema, any));
    await w.close();
    const pubErr = new TextDecoder().decode(await new Response(pub.stderr).arrayBuffer());
    assert.equal((await pub.status).code, 0, pubErr);
    const exitEvent = await firstExit;
    assert.equal(exitEvent.value!.namespace, "itest");
    assert.equal(fromBinary(TaskExitSchema, exitEvent.value!.event!.value).exitStatus, 3);
    await exits.return?.();

    // Content written under a lease, an image on it, and the collector
    // removing the blob once neither holds it.
    const leases = serviceClient(client, Leases, inNs("itest"));
    await leases.create({ id: "itest-lease" });
    const underLease = {
      defaults: {
        metadata: { [NS_KEY]: "itest", "containerd-lease": "itest-lease" },
        timeoutMs: 10_000,
      },
    };
    const content = serviceClient(client, Content, underLease);
    const blob = new TextEncoder().encode(JSON.stringify({ schemaVersion: 2, layers: [] }));
    const digest = await digestOf(blob);
    const answers = [];
    for await (
      const a of content.write((async function* () {
        yield {
          action: WriteAction.WRITE,
          ref: "itest-ref",
          total: BigInt(blob.length),
          data: blob.subarray(0, 4),
        };
        yield {
          action: WriteAction.COMMIT,
          ref: "itest-ref",
          offset: 4n,
          data: blob.subarray(4),
          expected: digest,
        };
      })())
    ) answers.push(a);
    assert.equal(answers.at(-1)!.digest, digest);
    assert.deepEqual(
      (await leases.listResources({ id: "itest-lease" })).resources.map((r) => r.id),
      [digest],
    );
    let read = "";
    for await (const chunk of content.read({ digest, offset: 2n })) {
      read += new TextDecoder().decode(chunk.data);
    }
    assert.equal(read, new TextDecoder().decode(blob.subarray(2)));
    const images = serviceClient(client, Images, inNs("itest"));
    const target = {
      mediaType: "application/vnd.oci.image.manifest.v1+json",
      digest,
      size: BigInt(blob.length),
    };
    await images.create({ image: { name: "example.com/itest:1", target } });
    await leases.delete({ id: "itest-lease", sync: true });
    assert.equal(
      (await content.info({ digest })).info?.size,
      BigInt(blob.length),
      "the image keeps the blob",
    );
    assert.deepEqual(
      (await images.list({ filters: ['name~="itest"'] })).images.map((i) => i.name),
      ["example.com/itest:1"],
    );
    await images.delete({ name: "example.com/itest:1", sync: true });
    await rejectsWith(content.info({ digest }), Code.NotFound);
    await assert.rejects(
      Deno.stat(`${root}/io.containerd.content.v1.content/blobs/sha256/${digest.slice(7)}`),
      Deno.errors.NotFound,
      "the collector removed the blob",
    );

    // Snapshots on the native snapshotter, under a lease as containerd's
    // clients work (an unreferenced committed snapshot is the collector's).
    await leases.create({ id: "snap-lease" });
    const snapshots = serviceClient(client, Snapshots, {
      defaults: {
        metadata: { [NS_KEY]: "itest", "containerd-lease": "snap-lease" },
        timeoutMs: 10_000,
      },
    });
    const mounts = (await snapshots.prepare({ snapshotter: "native", key: "itest-active" })).mounts;
    assert.equal(mounts[0].type, "bind");
    await snapshots.commit({ snapshotter: "native", name: "itest-layer", key: "itest-active" });
    const names: string[] = [];
    for await (const block of snapshots.list({ snapshotter: "native" })) {
      names.push(...block.info.map((i) => i.name));
    }
    assert.deepEqual(names, ["itest-layer"]);
    await rejectsWith(snapshots.stat({ snapshotter: "zfs", key: "x" }), Code.InvalidArgument);
    await rejectsWith(namespaces.delete({ name: "itest" }), Code.FailedPrecondition, /snapshots/);
    await snapshots.remove({ snapshotter: "native", key: "itest-layer" });
    await leases.delete({ id: "snap-lease", sync: true });

    // A namespace that still holds containers cannot go.
    await rejectsWith(namespaces.delete({ name: "itest" }), Code.FailedPrecondition, /containers/);
    await containers.delete({ id: "web" });
    await containers.delete({ id: "db" });
    await rejectsWith(containers.delete({ id: "db" }), Code.NotFound);
    await namespaces.delete({ name: "itest" });
    assert.ok(!(await namespaces.list({})).namespaces.some((n) => n.name === "itest"));

    // A second daemon on the same root is refused, naming the root and the holder.
    const second = daemonAt(root, `${tmp}/state2`, `${tmp}/b2.sock`);
    const st = await second.done;
    assert.equal(st.code, 1);
    assert.match(
      second.log(),
      new RegExp(`root ${root} is in use by another berth daemon \\(pid ${daemon.child.pid}\\)`),
    );
    await assert.rejects(
      Deno.stat(`${tmp}/state2`),
      Deno.errors.NotFound,
      "the refused daemon made nothing",
    );
  } finally {
    client?.close();
    try {
      daemon.child.kill("SIGTERM");
    } catch { /* already gone */ }
    // A daemon that does not stop in time is killed, so a failure never hangs the suite.
    const killer = setTimeout(() => {
      try {
        daemon.child.kill("SIGKILL");
      } catch { /* gone */ }
    }, 30_000);
    const st = await daemon.done;
    clearTimeout(killer);
    try {
      assert.equal(st.code, 0, `daemon exit status ${st.code}:\n${daemon.log()}`);
      assert.match(daemon.log(), /level=info msg="berth stopped"/);
      await assert.rejects(Deno.lstat(ttrpc), Deno.errors.NotFound, "the socket is removed");
    } finally {
      await Deno.remove(tmp, { recursive: true });
    }
  }
});

Deno.test("daemon: a SIGTERM while plugins load stops the daemon once it has started, cleanly", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-daemon-test-" });
  const address = `${tmp}/state/berth.sock`;
  const daemon = daemonAt(`${tmp}/root`, `${tmp}/state`, address);
  try {
    // The first plugin's line: the daemon is starting, no socket is open yet.
    const deadline = Date.now() + 60_000;
    while (!/msg="loading plugin"/.test(daemon.log()) && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 2));
    }
    assert.match(daemon.log(), /msg="loading plugin"/, "the daemon began loading plugins");
    daemon.child.kill("SIGTERM");
    const st = await daemon.done;
    // Not 143 (killed by the signal): the stop waits for the start and undoes it.
    assert.equal(st.code, 0, `daemon exit status ${st.code}:\n${daemon.log()}`);
    assert.match(daemon.log(), /msg="received signal; shutting down" signal=SIGTERM/);
    assert.match(daemon.log(), /msg="berth stopped"/);
    await assert.rejects(Deno.lstat(address), Deno.errors.NotFound, "the gRPC socket is removed");
    await assert.rejects(Deno.lstat(`${address}.ttrpc`), Deno.errors.NotFound, "so is ttrpc's");
  } finally {
    try {
      daemon.child.kill("SIGKILL");
    } catch { /* gone */ }
    await daemon.done;
    await Deno.remove(tmp, { recursive: true });
  }
});
