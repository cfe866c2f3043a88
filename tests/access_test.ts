/**
 * Who may talk to the daemon. Its sockets are 0600 and root's, so a process
 * running as `nobody` cannot even connect; with the mode loosened by hand
 * it connects, and every call it makes on either socket (ttrpc and gRPC) is
 * answered PermissionDenied and does nothing. The same peer code running as
 * root is served, which shows the peer speaks both protocols right. A
 * container's process does not see the socket unless it is mounted in.
 */
import assert from "node:assert/strict";
import { create, toBinary } from "@bufbuild/protobuf";
import { Code } from "../src/errdefs/mod.ts";
import {
  CreateNamespaceRequestSchema,
  Namespaces,
} from "../src/gen/containerd/services/namespaces/v1/namespaces_pb.ts";
import { RequestSchema } from "../src/gen/ttrpc/request_pb.ts";
import { encodeHeaders, HpackDecoder } from "../src/grpc/h2/hpack.ts";
import { run } from "../src/spawn/mod.ts";
import { decodeResponse } from "../src/ttrpc/envelope.ts";
import { connect, serviceClient } from "../src/ttrpc/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import { makeBundle } from "./support/bundle.ts";
import { startDaemonIn, stopDaemon } from "./support/daemon.ts";
import { H2_PREFACE, h2Frame, ttrpcFrame } from "./support/frames.ts";
import { concat } from "./support/fuzz.ts";

// Connects to argv[1], sends the bytes argv[2] (hex), reads until the
// answer is complete (argv[3]: "ttrpc" one frame, "h2" the end of stream 1)
// or the server closes, and prints what happened.
const PY_PEER = `
import socket, struct, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(10)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect-error", e.errno)
    sys.exit(0)
s.sendall(bytes.fromhex(sys.argv[2]))
data = b""
def complete():
    if sys.argv[3] == "ttrpc":
        return len(data) >= 10 and len(data) >= 10 + struct.unpack(">I", data[:4])[0]
    off = 0
    while off + 9 <= len(data):
        n = int.from_bytes(data[off:off+3], "big")
        typ, flags, sid = data[off+3], data[off+4], struct.unpack(">I", data[off+5:off+9])[0] & 0x7fffffff
        if off + 9 + n > len(data):
            return False
        if typ == 1 and sid == 1 and flags & 1:
            return True
        off += 9 + n
    return False
try:
    while not complete():
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
except (socket.timeout, ConnectionResetError, BrokenPipeError):
    pass
print("got", data.hex(), flush=True)
if len(sys.argv) > 4:
    import time
    time.sleep(float(sys.argv[4]))  # hold the refused connection open
`;

const hex = (b: Uint8Array) => [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
const unhex = (s: string) => Uint8Array.from(s.match(/../g) ?? [], (x) => parseInt(x, 16));

async function peer(
  asNobody: boolean,
  sock: string,
  bytes: Uint8Array,
  proto: "ttrpc" | "h2",
  holdSeconds?: number,
) {
  const py = ["/usr/bin/python3", "-c", PY_PEER, sock, hex(bytes), proto];
  if (holdSeconds !== undefined) py.push(String(holdSeconds));
  const r = asNobody
    ? await run("setpriv", ["--reuid=nobody", "--regid=nogroup", "--clear-groups", ...py])
    : await run(py[0], py.slice(1));
  const out = new TextDecoder().decode(r.stdout).trim();
  assert.equal(r.code, 0, `peer failed: ${out} ${new TextDecoder().decode(r.stderr)}`);
  const [what, arg] = out.split(" ");
  if (what === "connect-error") return { connectErrno: Number(arg) };
  return { answer: unhex(arg ?? "") };
}

function nsCreate(name: string): Uint8Array {
  return toBinary(
    CreateNamespaceRequestSchema,
    create(CreateNamespaceRequestSchema, { namespace: { name } }),
  );
}

function ttrpcRequest(name: string): Uint8Array {
  const env = toBinary(
    RequestSchema,
    create(RequestSchema, {
      service: Namespaces.typeName,
      method: "Create",
      payload: nsCreate(name),
      metadata: [{ key: TTRPC_NAMESPACE_KEY, value: "default" }],
    }),
  );
  return ttrpcFrame(1, 1, 0, env);
}

/** The gRPC status of a ttrpc answer frame. */
function ttrpcStatus(answer: Uint8Array): number {
  assert.ok(answer.length >= 10, `no ttrpc answer (${answer.length} bytes)`);
  return decodeResponse(answer.subarray(10)).code;
}

function grpcRequest(name: string): Uint8Array {
  const msg = nsCreate(name);
  const prefix = new Uint8Array(5);
  new DataView(prefix.buffer).setUint32(1, msg.length);
  return concat(
    H2_PREFACE,
    h2Frame(0x4, 0, 0, new Uint8Array(0)),
    h2Frame(
      0x1,
      0x4,
      1,
      encodeHeaders([
        ":method",
        "POST",
        ":scheme",
        "http",
        ":path",
        `/${Namespaces.typeName}/Create`,
        ":authority",
        "localhost",
        "content-type",
        "application/grpc",
        "te",
        "trailers",
        "containerd-namespace",
        "default",
      ]),
    ),
    h2Frame(0x0, 0x1, 1, concat(prefix, msg)),
  );
}

/** The grpc-status of stream 1 in the server's bytes. */
function grpcStatus(answer: Uint8Array): number {
  const hpack = new HpackDecoder();
  let status: number | undefined;
  for (let off = 0; off + 9 <= answer.length;) {
    const n = (answer[off] << 16) | (answer[off + 1] << 8) | answer[off + 2];
    const type = answer[off + 3];
    const sid = new DataView(answer.buffer, answer.byteOffset).getUint32(off + 5) & 0x7fffffff;
    const payload = answer.subarray(off + 9, off + 9 + n);
    if (type === 0x1) {
      const fields = hpack.decode(payload);
      const i = fields.indexOf("grpc-status");
      if (sid === 1 && i >= 0 && i % 2 === 0) status = Number(fields[i + 1]);
    }
    off += 9 + n;
  }
  assert.ok(status !== undefined, `no grpc-status in ${answer.length} bytes`);
  return status;
}

Deno.test("access: the sockets are root's and 0600; a non-root peer cannot connect, and with the mode loosened is refused PermissionDenied on ttrpc and gRPC, changing nothing", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-access-" });
  const { daemon, address, ttrpc: ttrpcPath } = await startDaemonIn(tmp);
  try {
    // nobody must be able to walk to the sockets for the mode to be what stops it.
    await Deno.chmod(tmp, 0o755);
    for (const sock of [address, ttrpcPath]) {
      const st = await Deno.lstat(sock);
      assert.ok(st.isSocket);
      assert.equal(st.mode! & 0o777, 0o600, `${sock} is 0600`);
      assert.equal(st.uid, 0, `${sock} is root's`);
      assert.equal(st.gid, 0);
    }
    assert.equal(
      (await peer(true, ttrpcPath, ttrpcRequest("nobody1"), "ttrpc")).connectErrno,
      13,
      "EACCES on ttrpc",
    );
    assert.equal(
      (await peer(true, address, grpcRequest("nobody2"), "h2")).connectErrno,
      13,
      "EACCES on gRPC",
    );

    // Loosened by hand: the peer check answers instead.
    await Deno.chmod(address, 0o666);
    await Deno.chmod(ttrpcPath, 0o666);
    const t = await peer(true, ttrpcPath, ttrpcRequest("nobody3"), "ttrpc");
    assert.equal(Code[ttrpcStatus(t.answer!)], "PermissionDenied", "ttrpc refuses nobody");
    const g = await peer(true, address, grpcRequest("nobody4"), "h2");
    assert.equal(Code[grpcStatus(g.answer!)], "PermissionDenied", "gRPC refuses nobody");
    // The same peer as root is served: the refusal is about who, not how.
    const rt = await peer(false, ttrpcPath, ttrpcRequest("root1"), "ttrpc");
    assert.equal(Code[ttrpcStatus(rt.answer!)], "OK");
    const rg = await peer(false, address, grpcRequest("root2"), "h2");
    assert.equal(Code[grpcStatus(rg.answer!)], "OK");

    // A refused connection held open does not confuse the check of the next ones.
    const held = [
      peer(true, ttrpcPath, ttrpcRequest("nobody5"), "ttrpc", 4),
      peer(true, address, grpcRequest("nobody6"), "h2", 4),
    ];
    await new Promise((r) => setTimeout(r, 2000));
    const rt2 = await peer(false, ttrpcPath, ttrpcRequest("root3"), "ttrpc");
    assert.equal(Code[ttrpcStatus(rt2.answer!)], "OK", "served beside a held refused connection");
    const rg2 = await peer(false, address, grpcRequest("root4"), "h2");
    assert.equal(Code[grpcStatus(rg2.answer!)], "OK", "served beside a held refused connection");
    for (const h of await Promise.all(held)) assert.ok(h.answer!.length > 0);

    // Nothing nobody asked for happened.
    const c = await connect(ttrpcPath);
    try {
      const ns = serviceClient(c, Namespaces, { defaults: { timeoutMs: 5000 } });
      const names = (await ns.list({})).namespaces.map((n) => n.name).sort();
      assert.deepEqual(names.filter((n) => n.startsWith("nobody")), []);
      assert.ok(names.includes("root1") && names.includes("root2"), names.join(","));
    } finally {
      c.close();
    }
    assert.match(daemon.log(), /refusing connection.*uid 65534/);
  } finally {
    const status = await stopDaemon(daemon);
    await Deno.remove(tmp, { recursive: true });
    assert.equal(status.code, 0, daemon.log().slice(-3000));
  }
});

Deno.test("access: a container's process sees the daemon's socket only when it is mounted in", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-access-ctr-" });
  const sockDir = `${tmp}/run`;
  const sock = `${sockDir}/berth.sock`;
  await Deno.mkdir(sockDir);
  const listener = Deno.listen({ transport: "unix", path: sock });
  const id = `berth-access-${crypto.randomUUID().slice(0, 8)}`;
  try {
    const probe = async (mount: boolean) => {
      const bundle = `${tmp}/bundle-${mount}`;
      await makeBundle(bundle, {
        args: ["sh", "-c", `if test -S ${sock}; then echo reachable; else echo absent; fi`],
      });
      if (mount) {
        const spec = JSON.parse(await Deno.readTextFile(`${bundle}/config.json`));
        spec.mounts.push({
          destination: sockDir,
          type: "bind",
          source: sockDir,
          options: ["rbind"],
        });
        await Deno.writeTextFile(`${bundle}/config.json`, JSON.stringify(spec));
      }
      const r = await run("runc", [
        "--root",
        `${tmp}/runc`,
        "run",
        "--bundle",
        bundle,
        `${id}-${mount}`,
      ]);
      assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
      return new TextDecoder().decode(r.stdout).trim();
    };
    assert.equal(await probe(false), "absent");
    assert.equal(await probe(true), "reachable");
  } finally {
    listener.close();
    await Deno.remove(tmp, { recursive: true });
  }
});
