/**
 * The Diff service: Apply unpacks a layer blob of the caller's namespace
 * onto mounts (as an image unpack does for each layer), Diff writes the
 * changes between two sets of mounts as a new layer blob (as a commit or
 * export of a container does). The work is src/images' differ; this is the
 * wire around it. Mounts are used as directories (an overlay's upperdir, a
 * bind's source), never mounted.
 * @module
 */

import type { ContentStore } from "../../content/mod.ts";
import { invalidArgument } from "../../errdefs/mod.ts";
import { Diff } from "../../gen/containerd/services/diff/v1/diff_pb.ts";
import type { Mount as MountProto } from "../../gen/containerd/types/mount_pb.ts";
import { localContent, localDiffer, type Mount } from "../../images/mod.ts";
import type { Metadata } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import type { CallContext } from "../../rpc/mod.ts";
import { NamespacedContent } from "../../metadata/mod.ts";
import { descriptorFromProto, descriptorToProto } from "../images/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { leaseOf, type RPCService, rpcService } from "../mod.ts";

function mountsFromProto(ms: MountProto[]): Mount[] {
  return ms.map((m) => ({ type: m.type, source: m.source, options: [...m.options] }));
}

/** The Diff service over `content` (blobs with their namespaced records). */
export function diffService(content: NamespacedContent): RPCService {
  const differFor = (ctx: Pick<CallContext, "metadata">) =>
    localDiffer(localContent({ content }, namespaceRequired(ctx), leaseOf(ctx)));
  return rpcService(Diff, {
    apply: async (req, ctx) => {
      const desc = descriptorFromProto(req.diff);
      if (!desc) throw invalidArgument("diff descriptor is required");
      if (req.mounts.length === 0) throw invalidArgument("mounts are required");
      const applied = await differFor(ctx).apply(desc, mountsFromProto(req.mounts));
      return { applied: descriptorToProto(applied) };
    },
    diff: async (req, ctx) => {
      if (req.right.length === 0) throw invalidArgument("right mounts are required");
      const desc = await differFor(ctx).diff(
        mountsFromProto(req.left),
        mountsFromProto(req.right),
        {
          labels: req.labels,
          ref: req.ref,
          mediaType: req.mediaType,
        },
      );
      return { diff: descriptorToProto(desc) };
    },
  });
}

/** The plugin serving it: io.containerd.grpc.v1.diff. */
export const diffPlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "diff",
  requires: ["io.containerd.content.v1", "io.containerd.metadata.v1"],
  init: (ctx) =>
    diffService(
      new NamespacedContent(
        ctx.first<ContentStore>("io.containerd.content.v1"),
        ctx.first<Metadata>("io.containerd.metadata.v1"),
      ),
    ),
};
