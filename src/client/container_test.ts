import assert from "node:assert/strict";
import { applyOverrides, parseConfig } from "../config/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { builtinPlugins, startDaemon } from "../daemon/mod.ts";
import type { Exchange } from "../events/mod.ts";
import type { CollectStats, GarbageCollector } from "../gc/mod.ts";
import { Leases } from "../gen/containerd/services/leases/v1/leases_pb.ts";
import { Snapshots } from "../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { importDirectory } from "../images/mod.ts";
import { setLogSink } from "../log/mod.ts";
import type { Metadata } from "../metadata/mod.ts";
import type { Registration } from "../plugin/mod.ts";
import type { RPCService } from "../services/mod.ts";
import type { ServiceImpl } from "../rpc/mod.ts";
import { snapshotsService } from "../services/snapshots/mod.ts";
import type { Snapshotter } from "../snapshots/mod.ts";
import { remoteBackend } from "./backend.ts";
import { Connection } from "./connection.ts";
import { createContainer } from "./container.ts";

// The Snapshots service, except that a garbage collection runs to its end
// after the prepare of `key` and before the reply: the moment when another
// client's delete schedules one while this client has not yet created the
// container that will refer to the new snapshot.
function collectingAfterPrepare(key: string, seen: CollectStats[]): Registration<RPCService> {
  return {
    type: "io.containerd.grpc.v1",
    id: "snapshots",
    requires: [
      "io.containerd.metadata.v1",
      "io.containerd.event.v1",
      "io.containerd.snapshotter.v1",
      "io.containerd.gc.v1",
    ],
    init: (ctx) => {
      const svc = snapshotsService(
        ctx.first<Metadata>("io.containerd.metadata.v1"),
        ctx.all<Snapshotter>("io.containerd.snapshotter.v1"),
        ctx.first<Exchange>("io.containerd.event.v1"),
      );
      const gc = ctx.first<GarbageCollector>("io.containerd.gc.v1");
      return {
        registerOn: (server, transport) =>
          svc.registerOn({
            register(desc, impl, opts) {
              if ((desc as unknown) !== Snapshots) return server.register(desc, impl, opts);
              const inner = impl as unknown as ServiceImpl<typeof Snapshots>;
              const wrapped: ServiceImpl<typeof Snapshots> = {
                ...inner,
                prepare: async (req, call) => {
                  const res = await inner.prepare!(req, call);
                  if (req.key === key) seen.push(await gc.collect());
                  return res;
                },
              };
              server.register(Snapshots, wrapped, opts);
            },
          }, transport),
      };
    },
  };
}

// What creating a container from an image needs of a daemon (no tasks).
const KEEP = new Set([
  "io.containerd.event.v1.exchange",
  "io.containerd.content.v1.content",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.metadata.v1.sqlite",
  "io.containerd.gc.v1.scheduler",
  "io.containerd.grpc.v1.containers",
  "io.containerd.grpc.v1.images",
  "io.containerd.grpc.v1.leases",
  "io.containerd.grpc.v1.content",
  "io.containerd.grpc.v1.diff",
]);

Deno.test("createContainer: a collection between the snapshot's prepare and the container record keeps the snapshot", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-client-lease-" });
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  const collections: CollectStats[] = [];
  const { config } = parseConfig("version = 2\n");
  const daemon = await startDaemon(
    applyOverrides(config, {
      root: `${tmp}/root`,
      state: `${tmp}/state`,
      address: `${tmp}/state/b.sock`,
    }),
    {
      plugins: [
        ...builtinPlugins().filter((r) => KEEP.has(`${r.type}.${r.id}`)),
        collectingAfterPrepare("c1", collections),
      ],
    },
  );
  let conn: Connection | undefined;
  try {
    conn = await Connection.open({
      address: `${tmp}/state/b.sock`,
      namespace: "lease-test",
      timeoutMs: 60_000,
      connectTimeoutMs: 0,
      debug: false,
    });
    const rootfs = `${tmp}/rootfs`;
    await Deno.mkdir(rootfs);
    await Deno.writeTextFile(`${rootfs}/hello`, "hi\n");
    await importDirectory(remoteBackend(conn), rootfs, "example.com/lease-test:1", {
      snapshotter: "native",
    });

    const c = await createContainer(
      conn,
      { snapshotter: "native" },
      "example.com/lease-test:1",
      "c1",
      ["true"],
    );
    assert.equal(c.snapshotKey, "c1");
    assert.equal(collections.length, 1, "the collection ran between prepare and create");
    const { info } = await conn.service(Snapshots).stat({ snapshotter: "native", key: "c1" });
    assert.equal(info?.name, "c1");
    // The run's lease is gone; the container record alone holds the snapshot now.
    assert.deepEqual((await conn.service(Leases).list({})).leases, []);
    const gc = daemon.plugins.first<GarbageCollector>("io.containerd.gc.v1");
    await gc.collect();
    await conn.service(Snapshots).stat({ snapshotter: "native", key: "c1" });
    const mounts = await conn.service(Snapshots).mounts({ snapshotter: "native", key: "c1" });
    assert.equal(await Deno.readTextFile(`${mounts.mounts[0].source}/hello`), "hi\n");

    // Without the container record nothing holds it.
    await conn.service(Snapshots).remove({ snapshotter: "native", key: "c1" });
    await gc.collect();
    await assert.rejects(
      conn.service(Snapshots).stat({ snapshotter: "native", key: "c1" }),
      (e) => isCode(e, Code.NotFound),
    );
  } finally {
    conn?.close();
    await daemon.stop();
    setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l)));
    await Deno.remove(tmp, { recursive: true });
  }
});
