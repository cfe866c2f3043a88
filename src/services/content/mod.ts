/**
 * The Content service: blobs of the caller's namespace (info, update, list,
 * delete, streamed reads) and resumable ingests (status, list, abort, and
 * the bidirectional Write stream), over {@link NamespacedContent}.
 * @module
 */

import { create } from "@bufbuild/protobuf";
import type { ContentStore, IngestStatus } from "../../content/mod.ts";
import { parseDigest } from "../../content/mod.ts";
import { alreadyExists, BerthError, Code, invalidArgument } from "../../errdefs/mod.ts";
import { type Exchange, Topic } from "../../events/mod.ts";
import { ContentDeleteSchema } from "../../gen/containerd/events/content_pb.ts";
import {
  Content,
  WriteAction,
  type WriteContentRequest,
  WriteContentResponseSchema,
} from "../../gen/containerd/services/content/v1/content_pb.ts";
import { type ContentRecord, type Metadata, NamespacedContent } from "../../metadata/mod.ts";
import type { Registration } from "../../plugin/mod.ts";
import { namespaceRequired } from "../../namespaces/mod.ts";
import { leaseOf, maskPaths, type RPCService, rpcService, toTimestamp } from "../mod.ts";

function infoToProto(r: ContentRecord) {
  return {
    digest: r.digest,
    size: BigInt(r.size),
    createdAt: toTimestamp(r.createdAt),
    updatedAt: toTimestamp(r.updatedAt),
    labels: r.labels,
  };
}

function statusToProto(s: IngestStatus) {
  return {
    startedAt: toTimestamp(s.startedAt),
    updatedAt: toTimestamp(s.updatedAt),
    ref: s.ref,
    offset: BigInt(s.offset),
    total: BigInt(s.total),
    expected: s.expected ?? "",
  };
}

function checkDigest(digest: string): void {
  try {
    parseDigest(digest);
  } catch (err) {
    throw invalidArgument(`${JSON.stringify(digest)}: ${(err as Error).message}`);
  }
}

const LIST_BLOCK = 100;

/** The Content service over `content`, publishing deletes to `events`. */
export function contentService(content: NamespacedContent, events: Exchange): RPCService {
  return rpcService(Content, {
    info: (req, ctx) => {
      checkDigest(req.digest);
      return { info: infoToProto(content.info(namespaceRequired(ctx), req.digest)) };
    },
    update: (req, ctx) => {
      if (req.info === undefined) throw invalidArgument("content info is required");
      checkDigest(req.info.digest);
      const r = content.update(
        namespaceRequired(ctx),
        req.info.digest,
        req.info.labels,
        maskPaths(req.updateMask),
      );
      return { info: infoToProto(r) };
    },
    async *list(req, ctx) {
      const all = content.list(namespaceRequired(ctx), req.filters);
      for (let i = 0; i < all.length; i += LIST_BLOCK) {
        yield { info: all.slice(i, i + LIST_BLOCK).map(infoToProto) };
      }
    },
    delete: (req, ctx) => {
      const ns = namespaceRequired(ctx);
      checkDigest(req.digest);
      content.delete(ns, req.digest);
      events.publish(
        ns,
        Topic.ContentDelete,
        ContentDeleteSchema,
        { digest: req.digest },
      );
      return {};
    },
    async *read(req, ctx) {
      const ns = namespaceRequired(ctx);
      checkDigest(req.digest);
      const total = content.info(ns, req.digest).size;
      const offset = req.offset < 0n ? 0 : Number(req.offset);
      if (offset > total) {
        throw new BerthError(Code.OutOfRange, `read past object length ${total} bytes`);
      }
      const size = req.size <= 0n || offset + Number(req.size) > total
        ? total - offset
        : Number(req.size);
      if (size === 0) return;
      let pos = offset;
      for await (const data of await content.read(ns, req.digest, offset, size)) {
        yield { offset: BigInt(pos), data };
        pos += data.length;
      }
    },
    status: async (req, ctx) => ({
      status: statusToProto(await content.status(namespaceRequired(ctx), req.ref)),
    }),
    listStatuses: async (req, ctx) => ({
      statuses: (await content.listStatuses(namespaceRequired(ctx), req.filters)).map(
        statusToProto,
      ),
    }),
    abort: async (req, ctx) => {
      await content.abort(namespaceRequired(ctx), req.ref);
      return {};
    },
    write: (reqs, ctx) => writeStream(content, namespaceRequired(ctx), leaseOf(ctx), reqs),
  });
}

/**
 * containerd's Write protocol: the first message names the ref (and maybe
 * total and expected digest); each message is a stat, a write at the
 * current offset (offset 0 on a non-empty ingest starts over) or a commit;
 * each is answered with the offset reached; a commit ends the stream.
 */
async function* writeStream(
  content: NamespacedContent,
  ns: string,
  lease: string | undefined,
  reqs: AsyncIterable<WriteContentRequest>,
) {
  const it = reqs[Symbol.asyncIterator]();
  let next = await it.next();
  if (next.done) return;
  let req = next.value;
  if (req.ref === "") throw invalidArgument("first message must have a reference");
  if (req.expected !== "") checkDigest(req.expected);
  let total = Number(req.total);
  let expected = req.expected;
  const w = await content.writer(ns, req.ref, { total, expected, lease });
  try {
    for (;;) {
      const ws = w.status();
      const msg = create(WriteContentResponseSchema, {
        action: req.action,
        offset: BigInt(ws.offset),
      });
      if (req.expected !== "") {
        checkDigest(req.expected);
        expected = req.expected;
        if (content.holdIfPresent(ns, expected, lease)) {
          await w.close();
          await content.abort(ns, req.ref).catch(() => {});
          throw alreadyExists(`blob with expected digest ${expected}`);
        }
      }
      if (req.total > 0n) total = Number(req.total);
      switch (req.action) {
        case WriteAction.STAT:
          msg.digest = w.digest();
          msg.startedAt = toTimestamp(ws.startedAt);
          msg.updatedAt = toTimestamp(ws.updatedAt);
          msg.total = BigInt(total);
          break;
        case WriteAction.WRITE:
        case WriteAction.COMMIT:
          if (req.offset > 0n && Number(req.offset) !== ws.offset) {
            throw new BerthError(
              Code.OutOfRange,
              `write @${req.offset} must occur at current offset ${ws.offset}`,
            );
          }
          if (req.offset === 0n && ws.offset > 0) {
            await w.truncate(0);
            msg.offset = 0n;
          }
          if (req.data.length > 0) {
            await w.write(req.data);
            msg.offset += BigInt(req.data.length);
          }
          if (req.action === WriteAction.COMMIT) {
            await w.commit(total, expected || undefined, req.labels);
          }
          msg.digest = w.digest();
          break;
        default:
          throw invalidArgument(`unknown write action ${req.action}`);
      }
      yield msg;
      if (req.action === WriteAction.COMMIT) return;
      next = await it.next();
      if (next.done) return;
      req = next.value;
    }
  } finally {
    await w.close(); // after a commit this does nothing; otherwise the ingest stays resumable
  }
}

/** The plugin serving it: io.containerd.grpc.v1.content. */
export const contentServicePlugin: Registration<RPCService> = {
  type: "io.containerd.grpc.v1",
  id: "content",
  requires: ["io.containerd.content.v1", "io.containerd.metadata.v1", "io.containerd.event.v1"],
  init: (ctx) =>
    contentService(
      new NamespacedContent(
        ctx.first<ContentStore>("io.containerd.content.v1"),
        ctx.first<Metadata>("io.containerd.metadata.v1"),
      ),
      ctx.first<Exchange>("io.containerd.event.v1"),
    ),
};
