/**
 * The plugins a berth daemon is made of. The daemon loads whatever this
 * list holds and serves every RPC service among them; adding a feature
 * (the task runtime, a differ, a GC scheduler) is adding its registration
 * here, with no change to the server.
 *
 * The task runtime, for instance, comes as two registrations: a manager
 * `{ type: "io.containerd.runtime.v2", id: "task", requires: [metadata,
 * event] }` whose init reads `ctx.properties` (runtimes table, ttrpc
 * address for shims) and recovers live shims, and a service
 * `{ type: "io.containerd.grpc.v1", id: "tasks", requires:
 * ["io.containerd.runtime.v2"] }` whose instance is an RPCService; the
 * server picks the latter up like every other service.
 *
 * @module
 */

import { parseDuration } from "../config/mod.ts";
import { ContentStore } from "../content/mod.ts";
import { Code } from "../errdefs/mod.ts";
import { criPlugin } from "../cri/mod.ts";
import { Exchange } from "../events/mod.ts";
import { GarbageCollector } from "../gc/mod.ts";
import { type Metadata, openMetadata } from "../metadata/mod.ts";
import { type Registration, SkipPlugin } from "../plugin/mod.ts";
import { containersPlugin } from "../services/containers/mod.ts";
import { contentServicePlugin } from "../services/content/mod.ts";
import { diffPlugin } from "../services/diff/mod.ts";
import { eventsPlugin } from "../services/events/mod.ts";
import { imagesPlugin } from "../services/images/mod.ts";
import { leasesPlugin } from "../services/leases/mod.ts";
import { introspectionPlugin } from "../services/introspection/mod.ts";
import { namespacesPlugin } from "../services/namespaces/mod.ts";
import { snapshotsPlugin } from "../services/snapshots/mod.ts";
import { tasksPlugin } from "../services/tasks/mod.ts";
import { taskManagerPlugin } from "../runtime/mod.ts";
import { versionPlugin } from "../services/version/mod.ts";
import { NativeSnapshotter, OverlaySnapshotter, type Snapshotter } from "../snapshots/mod.ts";

/** The event exchange every service publishes to; the daemon cannot work without it. */
export const exchangePlugin: Registration<Exchange> = {
  type: "io.containerd.event.v1",
  id: "exchange",
  required: true,
  init: () => new Exchange(),
  close: (ex) => ex.close(),
};

/** The blob store under `<root>/io.containerd.content.v1.content`. */
export const contentPlugin: Registration<ContentStore> = {
  type: "io.containerd.content.v1",
  id: "content",
  init: async (ctx) => {
    ctx.meta.exports.root = ctx.root;
    return await ContentStore.open(ctx.root);
  },
};

/** The metadata database (namespaces, containers, images, leases...); required. */
export const metadataPlugin: Registration<Metadata> = {
  type: "io.containerd.metadata.v1",
  id: "sqlite",
  required: true,
  init: async (ctx) => {
    const md = await openMetadata(ctx.daemonRoot);
    ctx.meta.exports.path = md.db.path;
    return md;
  },
  close: (md) => md.close(),
};

function snapshotterPlugin(
  id: string,
  open: (root: string) => Promise<Snapshotter>,
): Registration<Snapshotter> {
  return {
    type: "io.containerd.snapshotter.v1",
    id,
    init: async (ctx) => {
      const root = (ctx.config.root_path as string | undefined) || ctx.root;
      ctx.meta.exports.root = root;
      ctx.meta.platforms.push({ os: "linux", architecture: "amd64" });
      try {
        return await open(root);
      } catch (err) {
        // Not supported here (no overlay in the kernel): skipped, as containerd reports it.
        if ((err as { code?: Code }).code === Code.Unimplemented) {
          throw new SkipPlugin((err as Error).message);
        }
        throw err;
      }
    },
    close: (s) => s.close(),
  };
}

/** overlayfs, the default snapshotter. */
export const overlayfsPlugin = snapshotterPlugin(
  "overlayfs",
  (root) => OverlaySnapshotter.open(root),
);
/** native: plain copies, works on any file system. */
export const nativePlugin = snapshotterPlugin("native", (root) => NativeSnapshotter.open(root));

/**
 * The garbage collector: collects after deletes (`schedule_delay` after
 * them, paced by `pause_threshold`) and once `startup_delay` after start. It sweeps the
 * snapshotters loaded before it, so it is registered after them.
 */
export const gcPlugin: Registration<GarbageCollector> = {
  type: "io.containerd.gc.v1",
  id: "scheduler",
  requires: ["io.containerd.metadata.v1", "io.containerd.content.v1"],
  init: (ctx) => {
    const key = (k: string) => `plugins."${ctx.uri}".${k}`;
    const delay = parseDuration(String(ctx.config.schedule_delay ?? "0s"), key("schedule_delay"));
    const startup = parseDuration(
      String(ctx.config.startup_delay ?? "100ms"),
      key("startup_delay"),
    );
    const gc = new GarbageCollector({
      metadata: ctx.first<Metadata>("io.containerd.metadata.v1"),
      content: ctx.first<ContentStore>("io.containerd.content.v1"),
      snapshotters: ctx.all<Snapshotter>("io.containerd.snapshotter.v1"),
      delayMs: delay,
      pauseThreshold: Number(ctx.config.pause_threshold ?? 0.02),
    });
    gc.watch();
    gc.scheduleCollect(startup);
    return gc;
  },
  close: (gc) => gc.close(),
};

/** Every built-in plugin, in registration order (the registry sorts out dependencies). */
export function builtinPlugins(): Registration[] {
  return [
    exchangePlugin,
    contentPlugin,
    overlayfsPlugin,
    nativePlugin,
    metadataPlugin,
    gcPlugin,
    versionPlugin,
    introspectionPlugin,
    namespacesPlugin,
    containersPlugin,
    eventsPlugin,
    imagesPlugin,
    leasesPlugin,
    snapshotsPlugin,
    contentServicePlugin,
    diffPlugin,
    taskManagerPlugin,
    tasksPlugin,
    criPlugin,
  ] as Registration[];
}
