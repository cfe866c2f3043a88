/**
 * Seeded fuzzers against a running daemon: protobuf payloads for every
 * method of every containerd service it serves (random bytes, and random
 * messages built from each method's input schema, then mutated), raw ttrpc
 * frames on its ttrpc socket, and raw HTTP/2 + gRPC frames on its gRPC
 * socket. Each payload case must get an answer or an error within a bound;
 * the daemon must keep serving both sockets, start no process it keeps,
 * and not grow its memory without end.
 */
import assert from "node:assert/strict";
import { type DescField, type DescMessage, type DescService, ScalarType } from "@bufbuild/protobuf";
import { BinaryWriter, WireType } from "@bufbuild/protobuf/wire";
import { BerthError, Code } from "../src/errdefs/mod.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Content } from "../src/gen/containerd/services/content/v1/content_pb.ts";
import { Diff } from "../src/gen/containerd/services/diff/v1/diff_pb.ts";
import { Events } from "../src/gen/containerd/services/events/v1/events_pb.ts";
import { Images } from "../src/gen/containerd/services/images/v1/images_pb.ts";
import { Introspection } from "../src/gen/containerd/services/introspection/v1/introspection_pb.ts";
import { Leases } from "../src/gen/containerd/services/leases/v1/leases_pb.ts";
import { Namespaces } from "../src/gen/containerd/services/namespaces/v1/namespaces_pb.ts";
import { Snapshots } from "../src/gen/containerd/services/snapshots/v1/snapshots_pb.ts";
import { Tasks } from "../src/gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { GrpcClient } from "../src/grpc/mod.ts";
import { encodeHeaders } from "../src/grpc/h2/hpack.ts";
import { type Client, connect, serviceClient } from "../src/ttrpc/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import { startDaemonIn, stopDaemon } from "./support/daemon.ts";
import { H2_PREFACE, h2Frame, ttrpcFrame } from "./support/frames.ts";
import { bounded, concat, fuzzCases, fuzzSeed, fuzzSummary, mutate, Rng } from "./support/fuzz.ts";
import { childrenOf, isAlive, rssKiB } from "./support/proc.ts";

const SERVICES: DescService[] = [
  Containers,
  Content,
  Diff,
  Events,
  Images,
  Introspection,
  Leases,
  Namespaces,
  Snapshots,
  Tasks,
  Version,
];

const STRINGS = [
  "default",
  "sha256:" + "0".repeat(64),
  "../../etc/passwd",
  "/",
  "io.containerd.runc.v2",
  "overlayfs",
  "",
  "labels.a==b",
  "x".repeat(300),
];

function randomString(rng: Rng): string {
  return rng.chance(0.4) ? rng.pick(STRINGS) : rng.string(24);
}

function writeScalar(rng: Rng, w: BinaryWriter, no: number, t: ScalarType): void {
  switch (t) {
    case ScalarType.STRING:
      w.tag(no, WireType.LengthDelimited).string(randomString(rng));
      break;
    case ScalarType.BYTES:
      w.tag(no, WireType.LengthDelimited).bytes(
        rng.chance(0.3) ? new TextEncoder().encode("{}") : rng.bytes(rng.int(64)),
      );
      break;
    case ScalarType.DOUBLE:
    case ScalarType.FIXED64:
    case ScalarType.SFIXED64:
      w.tag(no, WireType.Bit64).fixed64(BigInt(rng.u32()) << BigInt(rng.int(33)));
      break;
    case ScalarType.FLOAT:
    case ScalarType.FIXED32:
    case ScalarType.SFIXED32:
      w.tag(no, WireType.Bit32).fixed32(rng.u32());
      break;
    default: // every varint type: small, huge, negative
      w.tag(no, WireType.Varint).int64(
        rng.pick([0n, 1n, 9n, -1n, 2n ** 63n - 1n, -(2n ** 63n), BigInt(rng.u32())]),
      );
  }
}

function writeField(rng: Rng, w: BinaryWriter, f: DescField, depth: number): void {
  const value = (no: number, kind: string, writer: BinaryWriter) => {
    if (kind === "message" && f.message !== undefined) {
      writer.tag(no, WireType.LengthDelimited).bytes(randomMessage(rng, f.message, depth + 1));
    } else if (kind === "enum") {
      writer.tag(no, WireType.Varint).int32(rng.int(6) - 1);
    } else {
      writeScalar(rng, writer, no, f.scalar ?? ScalarType.STRING);
    }
  };
  switch (f.fieldKind) {
    case "list":
      for (let i = rng.int(3); i > 0; i--) value(f.number, f.listKind, w);
      break;
    case "map":
      for (let i = rng.int(3); i > 0; i--) {
        const entry = new BinaryWriter();
        writeScalar(rng, entry, 1, f.mapKey);
        value(2, f.mapKind, entry);
        w.tag(f.number, WireType.LengthDelimited).bytes(entry.finish());
      }
      break;
    default:
      value(f.number, f.fieldKind, w);
  }
}

/** A message of schema `desc` with random fields set, as wire bytes. */
function randomMessage(rng: Rng, desc: DescMessage, depth = 0): Uint8Array {
  const w = new BinaryWriter();
  if (depth > 3) return w.finish();
  for (const f of desc.fields) if (rng.chance(0.6)) writeField(rng, w, f, depth);
  return w.finish();
}

const TTRPC_NS = { [TTRPC_NAMESPACE_KEY]: "fuzz" };

/** One payload case: the verdict ("ok", a code name, "open" for a stream still running). */
async function payloadCase(
  client: Client,
  service: DescService,
  methodIndex: number,
  payload: Uint8Array,
  more: Uint8Array[],
): Promise<string> {
  const m = service.methods[methodIndex];
  const opts = { timeoutMs: 3000, metadata: TTRPC_NS };
  try {
    if (m.methodKind === "unary") {
      await client.call(service.typeName, m.name, payload, opts);
      return "ok";
    }
    const first = m.methodKind === "server_streaming" ? payload : undefined;
    const s = client.stream(service.typeName, m.name, m.methodKind, first, opts);
    if (first === undefined) {
      for (const p of [payload, ...more]) await s.send(p);
      s.closeSend();
    }
    const it = s[Symbol.asyncIterator]();
    try {
      // A subscription may rightly stay open: wait a little, then leave.
      const r = await Promise.race([
        it.next(),
        new Promise<"open">((r) => setTimeout(() => r("open"), 200)),
      ]);
      if (r === "open") return "open";
      return "ok";
    } finally {
      await it.return?.();
    }
  } catch (err) {
    if (err instanceof BerthError) return Code[err.code];
    throw err;
  }
}

/** A valid ttrpc request for Version.Version, as frame bytes. */
function versionRequestFrame(id: number): Uint8Array {
  const w = new BinaryWriter();
  w.tag(1, WireType.LengthDelimited).string(Version.typeName);
  w.tag(2, WireType.LengthDelimited).string("Version");
  w.tag(3, WireType.LengthDelimited).bytes(new Uint8Array(0));
  w.tag(4, WireType.Varint).int64(1_000_000_000n);
  return ttrpcFrame(id, 1, 0, w.finish());
}

/** A valid HTTP/2 connection start and one gRPC call to Version.Version. */
function grpcVersionCall(): Uint8Array {
  const headers = encodeHeaders([
    ":method",
    "POST",
    ":scheme",
    "http",
    ":path",
    `/${Version.typeName}/Version`,
    ":authority",
    "localhost",
    "content-type",
    "application/grpc",
    "te",
    "trailers",
  ]);
  return concat(
    h2Frame(0x4, 0, 0, new Uint8Array(0)), // SETTINGS
    h2Frame(0x1, 0x4, 1, headers), // HEADERS, END_HEADERS
    h2Frame(0x0, 0x1, 1, new Uint8Array(5)), // DATA: an empty message, END_STREAM
  );
}

/** Random HTTP/2 frames of every type, with random flags and streams. */
function randomH2Frames(rng: Rng): Uint8Array {
  const frames: Uint8Array[] = [];
  for (let i = 1 + rng.int(6); i > 0; i--) {
    frames.push(
      h2Frame(
        rng.int(11),
        rng.int(256),
        rng.pick([0, 1, 3, rng.u32() >>> 1]),
        rng.bytes(rng.int(40)),
      ),
    );
  }
  return concat(...frames);
}

async function sendRaw(path: string, bytes: Uint8Array): Promise<void> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    await conn.write(bytes).catch(() => {});
    // Read what the server says, briefly: it may answer, close, or wait for more.
    const buf = new Uint8Array(4096);
    await Promise.race([
      conn.read(buf).catch(() => null),
      new Promise((r) => setTimeout(r, 5)),
    ]);
  } finally {
    conn.close();
  }
}

Deno.test("fuzz: the daemon answers garbage on every service, ttrpc frame and HTTP/2 frame with errors, and keeps serving", async (t) => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-fuzz-rpc-" });
  const { daemon, address, ttrpc: ttrpcPath } = await startDaemonIn(tmp);
  const pid = daemon.child.pid;
  const serving = async (what: string) => {
    assert.ok(isAlive(pid), `daemon died after ${what}:\n${daemon.log().slice(-4000)}`);
    const c = await connect(ttrpcPath);
    try {
      const v = serviceClient(c, Version, { defaults: { timeoutMs: 5000 } });
      await bounded(`ttrpc Version after ${what}`, 10_000, v.version({}));
    } finally {
      c.close();
    }
    const g = new GrpcClient(address);
    try {
      await bounded(`gRPC Version after ${what}`, 10_000, g.unary(Version.method.version, {}));
    } finally {
      await g.close();
    }
  };
  try {
    await serving("start");
    const rssStart = rssKiB(pid)!;

    await t.step("protobuf payloads of every method", async () => {
      const seed = fuzzSeed("payloads");
      const rng = new Rng(seed);
      const n = fuzzCases(1200);
      const counts: Record<string, number> = {};
      let client = await connect(ttrpcPath);
      let reconnects = 0;
      let rssWarm = 0;
      try {
        for (let i = 0; i < n; i++) {
          const service = rng.pick(SERVICES);
          const mi = rng.int(service.methods.length);
          const input = service.methods[mi].input;
          const gen = () =>
            rng.chance(0.2)
              ? rng.bytes(rng.int(128))
              : rng.chance(0.5)
              ? mutate(rng, randomMessage(rng, input))
              : randomMessage(rng, input);
          const payload = gen();
          const more = Array.from({ length: rng.int(3) }, gen);
          const what = `payload case ${i} ${service.typeName}.${
            service.methods[mi].name
          } (seed ${seed})`;
          const v = await bounded(what, 10_000, payloadCase(client, service, mi, payload, more));
          counts[v] = (counts[v] ?? 0) + 1;
          assert.ok(
            v !== "Unknown",
            `${what}: answered Unknown, an exception that is no BerthError`,
          );
          if (client.closed) {
            reconnects++;
            client = await connect(ttrpcPath);
          }
          if (i === Math.floor(n / 4)) rssWarm = rssKiB(pid) ?? 0;
          if (i % 500 === 499) await serving(what);
        }
      } finally {
        client.close();
      }
      await serving("payload cases");
      const rssEnd = rssKiB(pid)!;
      fuzzSummary(
        "payloads",
        seed,
        n,
        `daemon serving, ${reconnects} connections closed by it, RSS ${rssWarm} -> ${rssEnd} KiB ${
          JSON.stringify(counts)
        }`,
      );
      assert.ok(rssEnd < rssWarm * 1.5 + 32 * 1024, `RSS grew from ${rssWarm} to ${rssEnd} KiB`);
    });

    await t.step("ttrpc frames", async () => {
      const seed = fuzzSeed("ttrpc-frames");
      const rng = new Rng(seed);
      const n = fuzzCases(600);
      for (let i = 0; i < n; i++) {
        let bytes: Uint8Array;
        if (rng.chance(0.5)) {
          bytes = mutate(rng, concat(versionRequestFrame(1), versionRequestFrame(3)));
        } else {
          const frames = Array.from(
            { length: 1 + rng.int(4) },
            () =>
              ttrpcFrame(
                rng.pick([0, 1, 2, 3, rng.u32()]),
                rng.int(8),
                rng.int(8),
                rng.chance(0.5)
                  ? mutate(rng, versionRequestFrame(1).subarray(10))
                  : rng.bytes(rng.int(64)),
              ),
          );
          bytes = concat(...frames);
        }
        await bounded(`ttrpc frame case ${i} (seed ${seed})`, 5000, sendRaw(ttrpcPath, bytes));
        if (i % 500 === 499) await serving(`ttrpc frame case ${i} (seed ${seed})`);
      }
      await serving("ttrpc frames");
      fuzzSummary("ttrpc-frames", seed, n, `daemon serving, RSS ${rssKiB(pid)} KiB`);
    });

    await t.step("HTTP/2 and gRPC frames", async () => {
      const seed = fuzzSeed("h2-frames");
      const rng = new Rng(seed);
      const n = fuzzCases(600);
      const valid = grpcVersionCall();
      for (let i = 0; i < n; i++) {
        const body = rng.chance(0.5) ? mutate(rng, valid) : randomH2Frames(rng);
        const bytes = rng.chance(0.9)
          ? concat(H2_PREFACE, body)
          : mutate(rng, concat(H2_PREFACE, body));
        await bounded(`h2 frame case ${i} (seed ${seed})`, 5000, sendRaw(address, bytes));
        if (i % 500 === 499) await serving(`h2 frame case ${i} (seed ${seed})`);
      }
      await serving("h2 frames");
      fuzzSummary("h2-frames", seed, n, `daemon serving, RSS ${rssKiB(pid)} KiB`);
    });

    // Nothing the fuzzing asked for left a process running under the daemon.
    assert.deepEqual(childrenOf(pid), [], "the daemon has no children left");
    const rssEnd = rssKiB(pid)!;
    console.log(`fuzz rpc: daemon RSS ${rssStart} KiB at start, ${rssEnd} KiB at end`);
    // V8 settles at some size above the start; a leak per case grows past it with the count.
    assert.ok(rssEnd < rssStart * 2.5, `daemon RSS grew from ${rssStart} to ${rssEnd} KiB`);
  } finally {
    const status = await stopDaemon(daemon);
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    assert.equal(
      status.code,
      0,
      `daemon exit status ${status.code}:\n${daemon.log().slice(-4000)}`,
    );
  }
});
