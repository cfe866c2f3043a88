/**
 * src/images' ImageBackend over the daemon's services, so `images import`
 * streams from the client into the daemon's content store as ctr does.
 * Layers are applied by the daemon's Diff service onto mounts its
 * snapshotter returns, as ctr unpacks through containerd's.
 * @module
 */

import { DEFAULT_SNAPSHOTTER } from "../defaults/mod.ts";
import { Digester } from "../content/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { Content, WriteAction } from "../gen/containerd/services/content/v1/content_pb.ts";
import { Diff } from "../gen/containerd/services/diff/v1/diff_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { WriteContentRequestSchema } from "../gen/containerd/services/content/v1/content_pb.ts";
import { Images } from "../gen/containerd/services/images/v1/images_pb.ts";
import type { Image as ImageProto } from "../gen/containerd/services/images/v1/images_pb.ts";
import { Snapshots } from "../gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import type {
  BlobWriter,
  ContentAccess,
  Descriptor,
  Image,
  ImageBackend,
  ImageRecords,
  LayerDiffer,
  LayerSnapshots,
} from "../images/mod.ts";
import type { Connection } from "./connection.ts";
import { withLease } from "./lease.ts";

type WriteInit = MessageInitShape<typeof WriteContentRequestSchema>;

/** A queue the bidi Write stream pulls requests from. */
class RequestQueue implements AsyncIterable<WriteInit> {
  #items: WriteInit[] = [];
  #waiting: ((r: IteratorResult<WriteInit>) => void) | undefined;
  #done = false;
  push(item: WriteInit): void {
    if (this.#waiting) {
      const w = this.#waiting;
      this.#waiting = undefined;
      w({ value: item, done: false });
    } else this.#items.push(item);
  }
  end(): void {
    this.#done = true;
    this.#waiting?.({ value: undefined, done: true });
    this.#waiting = undefined;
  }
  [Symbol.asyncIterator](): AsyncIterator<WriteInit> {
    return {
      next: () => {
        const item = this.#items.shift();
        if (item) return Promise.resolve({ value: item, done: false });
        if (this.#done) return Promise.resolve({ value: undefined, done: true });
        return new Promise((r) => this.#waiting = r);
      },
    };
  }
}

const CHUNK = 1 << 20;
// Writes sent before their answers are awaited: the daemon writes one chunk while the next is read and sent.
const WINDOW = 4;

async function remoteWriter(
  conn: Connection,
  lease: string | undefined,
  ref: string,
  opts: { total?: number; expected?: string },
): Promise<BlobWriter> {
  const queue = new RequestQueue();
  const responses = conn.service(Content, { lease }).write(queue)[Symbol.asyncIterator]();
  let unanswered = 0;
  const answer = async () => {
    const r = await responses.next();
    if (r.done) throw new Error("content write stream ended early");
    unanswered--;
    return r.value;
  };
  const call = async (req: WriteInit) => {
    while (unanswered > 0) await answer();
    queue.push(req);
    unanswered++;
    return await answer();
  };
  const first: WriteInit = {
    action: WriteAction.STAT,
    ref,
    total: BigInt(opts.total ?? 0),
    expected: opts.expected ?? "",
  };
  const st = await call(first);
  // Bytes sent; the daemon takes requests in order, so each write's offset is known before its answer.
  let offset = Number(st.offset);
  // With no expected digest, the client hashes what it sends: a commit of a
  // blob the store already has answers AlreadyExists, and the write still
  // succeeded (as containerd's clients treat it) with the digest it computed.
  let digester = opts.expected ? undefined : new Digester();
  if (digester !== undefined && offset > 0) {
    offset = Number((await call({ action: WriteAction.WRITE, ref, offset: 0n })).offset);
  }
  let closed = false;
  const finish = () => {
    if (!closed) {
      closed = true;
      queue.end();
    }
  };
  return {
    get offset() {
      return offset;
    },
    async write(chunk) {
      digester?.update(chunk);
      for (let i = 0; i < chunk.length; i += CHUNK) {
        const part = chunk.subarray(i, i + CHUNK);
        queue.push({ action: WriteAction.WRITE, ref, offset: BigInt(offset), data: part });
        unanswered++;
        offset += part.length;
        while (unanswered > WINDOW) await answer();
      }
    },
    async truncate() {
      const r = await call({ action: WriteAction.WRITE, ref, offset: 0n });
      offset = Number(r.offset);
      if (digester !== undefined) digester = new Digester();
    },
    async commit(size, expected, labels = {}) {
      try {
        const r = await call({
          action: WriteAction.COMMIT,
          ref,
          offset: BigInt(offset),
          total: BigInt(size),
          expected: expected ?? "",
          labels,
        });
        finish();
        return r.digest;
      } catch (err) {
        finish();
        const digest = expected || digester?.digest();
        if (!isCode(err, Code.AlreadyExists) || !digest) throw err;
        await conn.service(Content, { lease }).abort({ ref }).catch(() => {});
        if (Object.keys(labels).length) await setLabels(conn, digest, labels);
        return digest;
      }
    },
    close() {
      finish();
      return Promise.resolve();
    },
  };
}

async function setLabels(
  conn: Connection,
  digest: string,
  labels: Record<string, string>,
): Promise<void> {
  if (Object.keys(labels).length === 0) return;
  await conn.service(Content).update({
    info: { digest, labels },
    updateMask: { paths: Object.keys(labels).map((k) => `labels.${k}`) },
  });
}

function contentAccess(conn: Connection, lease?: string): ContentAccess {
  return {
    async info(digest) {
      const { info } = await conn.service(Content).info({ digest });
      return { digest, size: Number(info?.size ?? 0), labels: info?.labels ?? {} };
    },
    read(digest, offset = 0) {
      const it = conn.service(Content).read({ digest, offset: BigInt(offset) })
        [Symbol.asyncIterator]();
      return Promise.resolve(
        new ReadableStream<Uint8Array>({
          async pull(ctl) {
            const r = await it.next();
            if (r.done) ctl.close();
            else ctl.enqueue(r.value.data);
          },
          async cancel() {
            await it.return?.();
          },
        }),
      );
    },
    writer: (ref, opts = {}) => remoteWriter(conn, lease, ref, opts),
    async abort(ref) {
      try {
        await conn.service(Content).abort({ ref });
      } catch (err) {
        if (!isCode(err, Code.NotFound)) throw err;
      }
    },
    setLabels: (digest, labels) => setLabels(conn, digest, labels),
  };
}

function fromProto(i: ImageProto): Image {
  const t = i.target!;
  return {
    name: i.name,
    labels: i.labels,
    target: {
      mediaType: t.mediaType,
      digest: t.digest,
      size: Number(t.size),
      annotations: t.annotations,
    },
    createdAt: new Date(Number(i.createdAt?.seconds ?? 0n) * 1000),
    updatedAt: new Date(Number(i.updatedAt?.seconds ?? 0n) * 1000),
  };
}

function imageRecords(conn: Connection, lease?: string): ImageRecords {
  const svc = () => conn.service(Images, { lease });
  return {
    async get(name) {
      try {
        const { image } = await svc().get({ name });
        return image ? fromProto(image) : undefined;
      } catch (err) {
        if (isCode(err, Code.NotFound)) return undefined;
        throw err;
      }
    },
    async put(image) {
      const msg = {
        name: image.name,
        labels: image.labels ?? {},
        target: { ...image.target, size: BigInt(image.target.size) },
      };
      try {
        const { image: out } = await svc().create({ image: msg });
        return fromProto(out!);
      } catch (err) {
        if (!isCode(err, Code.AlreadyExists)) throw err;
        const paths = ["target", ...Object.keys(image.labels ?? {}).map((k) => `labels.${k}`)];
        const { image: out } = await svc().update({ image: msg, updateMask: { paths } });
        return fromProto(out!);
      }
    },
    async list(filters) {
      const { images } = await svc().list({ filters: filters ?? [] });
      return images.map(fromProto);
    },
    async delete(name) {
      await svc().delete({ name });
    },
  };
}

function layerSnapshots(conn: Connection, snapshotter: string, lease?: string): LayerSnapshots {
  const svc = () => conn.service(Snapshots, { lease });
  return {
    name: snapshotter,
    async exists(key) {
      try {
        await svc().stat({ snapshotter, key });
        return true;
      } catch (err) {
        if (isCode(err, Code.NotFound)) return false;
        throw err;
      }
    },
    prepare: async (key, parent, labels) =>
      (await svc().prepare({ snapshotter, key, parent, labels: labels ?? {} })).mounts,
    commit: async (name, key, labels) => {
      await svc().commit({ snapshotter, name, key, labels: labels ?? {} });
    },
    remove: async (key) => {
      await svc().remove({ snapshotter, key });
    },
    mounts: async (key) => (await svc().mounts({ snapshotter, key })).mounts,
  };
}

const toProto = (d: Descriptor) => ({
  mediaType: d.mediaType,
  digest: d.digest,
  size: BigInt(d.size),
  annotations: d.annotations ?? {},
});
const fromDescProto = (
  d: { mediaType: string; digest: string; size: bigint } | undefined,
): Descriptor => ({
  mediaType: d?.mediaType ?? "",
  digest: d?.digest ?? "",
  size: Number(d?.size ?? 0n),
});

/**
 * The daemon's Diff service, as ctr unpacks through containerd's: the daemon
 * reads the layer from its own content store, so the blob is not sent back
 * over the socket.
 */
function remoteDiffer(conn: Connection, lease?: string): LayerDiffer {
  const svc = () => conn.service(Diff, { lease });
  return {
    async apply(desc, mounts) {
      const r = await svc().apply({ diff: toProto(desc), mounts });
      return fromDescProto(r.applied);
    },
    async diff(lower, upper, opts = {}) {
      const r = await svc().diff({
        left: lower,
        right: upper,
        labels: opts.labels ?? {},
        ref: opts.ref ?? "",
        mediaType: opts.mediaType ?? "",
      });
      return fromDescProto(r.diff);
    },
  };
}

/** An ImageBackend over the daemon's services on `conn`; writes held by `lease` when given. */
export function remoteBackend(conn: Connection, lease?: string): ImageBackend {
  const content = contentAccess(conn, lease);
  return {
    content,
    images: imageRecords(conn, lease),
    differ: remoteDiffer(conn, lease),
    snapshots: (name = DEFAULT_SNAPSHOTTER) => layerSnapshots(conn, name, lease),
    withLease: (fn) => withLease(conn, (id) => fn(remoteBackend(conn, id))),
  };
}
