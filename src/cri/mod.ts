/**
 * berth's CRI plugin, io.containerd.grpc.v1.cri: the Kubernetes
 * runtime.v1 RuntimeService served on the daemon's gRPC socket, working
 * in namespace k8s.io over the daemon's own stores and task manager (as
 * containerd's CRI plugin works over its client), configured from
 * `[plugins."io.containerd.grpc.v1.cri"]`.
 *
 * @example
 * ```ts
 * // berth daemon serves it; crictl talks to it:
 * //   crictl -r unix:///run/berth/berth.sock runp pod.json
 * import { criPlugin } from "./mod.ts";
 * ```
 * @module
 */

import type { ContentStore } from "../content/mod.ts";
import { localBackend } from "../images/mod.ts";
import { type Metadata, NamespacedContent, type NamespacedSnapshotter } from "../metadata/mod.ts";
import { daemonProperties, type Registration } from "../plugin/mod.ts";
import type { TaskManager } from "../runtime/mod.ts";
import type { RPCService } from "../services/mod.ts";
import type { Snapshotter } from "../snapshots/mod.ts";
import { invalidArgument } from "../errdefs/mod.ts";
import { create } from "@bufbuild/protobuf";
import { CniManager, DEFAULT_BIN_DIRS } from "../cni/mod.ts";
import { registryFromSection } from "../config/mod.ts";
import { ImageService, PullImageRequestSchema } from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import type { Collector } from "../services/mod.ts";
import { StreamServer } from "../streaming/mod.ts";
import type { CallContext } from "../rpc/mod.ts";
import { criConfig } from "./config.ts";
import { imageService } from "./images/mod.ts";
import { streamingRuntime } from "./streaming.ts";
import { RuntimeServiceImpl } from "./service.ts";
import { CRI_NAMESPACE } from "./spec.ts";

export { type CriConfig, criConfig, DEFAULT_SANDBOX_IMAGE } from "./config.ts";
export { RuntimeServiceImpl } from "./service.ts";
export { Annotation, CRI_NAMESPACE } from "./spec.ts";
export { formatRecord, LineSplitter, rfc3339Nano } from "./logs.ts";

/** The CRI plugin's instance: its service, and a close that stops its output copies. */
export interface CriPlugin extends RPCService {
  readonly runtime: RuntimeServiceImpl;
  close(): Promise<void>;
}

/** The plugin: io.containerd.grpc.v1.cri. */
export const criPlugin: Registration<CriPlugin> = {
  type: "io.containerd.grpc.v1",
  id: "cri",
  requires: [
    "io.containerd.runtime.v2",
    "io.containerd.metadata.v1",
    "io.containerd.content.v1",
    "io.containerd.snapshotter.v1",
  ],
  init: async (ctx) => {
    const cri = criConfig(ctx.config);
    const md = ctx.first<Metadata>("io.containerd.metadata.v1");
    const backends = ctx.all<Snapshotter>("io.containerd.snapshotter.v1");
    const snapshotters: Record<string, NamespacedSnapshotter> = {};
    for (const [name, s] of backends) snapshotters[name] = md.snapshotter(s);
    if (snapshotters[cri.snapshotter] === undefined) {
      throw invalidArgument(
        `plugins."${ctx.uri}".containerd.snapshotter: ${
          JSON.stringify(cri.snapshotter)
        } is not loaded (loaded: ${Object.keys(snapshotters).join(", ")})`,
      );
    }
    const content = new NamespacedContent(ctx.first<ContentStore>("io.containerd.content.v1"), md);
    await Deno.mkdir(ctx.root, { recursive: true, mode: 0o711 });
    await Deno.mkdir(ctx.state, { recursive: true, mode: 0o711 });
    const images = imageService({
      md,
      content,
      snapshotters,
      registry: registryFromSection(ctx.config),
      snapshotter: cri.snapshotter,
      gc: () => ctx.all<Collector>("io.containerd.gc.v1").values().next().value,
    });
    const runtime = new RuntimeServiceImpl({
      cri,
      config: daemonProperties(ctx).config,
      md,
      tasks: ctx.first<TaskManager>("io.containerd.runtime.v2"),
      images: localBackend({ content, md, snapshotters }, CRI_NAMESPACE),
      snapshotter: snapshotters[cri.snapshotter],
      snapshotRoot: ctx.plugins().find((p) =>
        p.uri === `io.containerd.snapshotter.v1.${cri.snapshotter}`
      )?.meta.exports.root ?? ctx.daemonRoot,
      cni: new CniManager({
        binDirs: [cri.cniBinDir, ...DEFAULT_BIN_DIRS],
        confDir: cri.cniConfDir,
        stateDir: `${ctx.state}/cni`,
      }),
      // The sandbox image, pulled by this plugin's own ImageService as an internal call.
      pull: async (ref) => {
        const call: CallContext = {
          service: "runtime.v1.ImageService",
          method: "PullImage",
          metadata: new Map(),
          signal: new AbortController().signal,
        };
        await images.pullImage!(create(PullImageRequestSchema, { image: { image: ref } }), call);
      },
      root: ctx.root,
      state: ctx.state,
    });
    await runtime.recover();
    const streams = new StreamServer({
      address: cri.streamServerAddress,
      port: Number(cri.streamServerPort),
      runtime: streamingRuntime(runtime.streamTarget()),
    });
    streams.start();
    runtime.deps.streams = streams;
    const rpc = runtime.rpc();
    return {
      runtime,
      registerOn: (server, transport) => {
        rpc.registerOn(server, transport);
        server.register(ImageService, images);
      },
      close: async () => {
        await streams.close();
        await runtime.close();
      },
    };
  },
  close: (p) => p.close(),
};
