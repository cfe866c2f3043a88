/**
 * The streaming server against its real peer, crictl 1.26: a small CRI
 * gRPC server (berth's own) answers Exec, Attach and PortForward with URLs
 * of a StreamServer whose runtime runs local busybox processes and forwards
 * to a local echo server; crictl then speaks SPDY/3.1 to those URLs.
 */

import assert from "node:assert/strict";
import { GrpcServer } from "../src/grpc/mod.ts";
import { run, spawn } from "../src/spawn/mod.ts";
import { StreamServer } from "../src/streaming/mod.ts";
import { RuntimeService } from "../src/gen/k8s/cri/runtime/v1/api_pb.ts";
import { notFound } from "../src/errdefs/mod.ts";
import { LocalRuntime, startEchoServer } from "./support/streaming.ts";

const CRICTL = "/work/shared/tools/crictl";
const CID = "c" + crypto.randomUUID().slice(0, 8);
const SANDBOX = "p" + crypto.randomUUID().slice(0, 8);

interface Fixture {
  sock: string;
  runtime: LocalRuntime;
  streams: StreamServer;
  echoPort: number;
}

async function withCri(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-stream-" });
  const sock = `${dir}/cri.sock`;
  const runtime = new LocalRuntime(["sh", "-c", "echo attached; read line; echo got $line"]);
  const streams = new StreamServer({ runtime });
  streams.start();
  const echo = startEchoServer();
  const grpc = new GrpcServer();
  grpc.register(RuntimeService, {
    version: () => ({
      version: "0.1.0",
      runtimeName: "berth-test",
      runtimeVersion: "0",
      runtimeApiVersion: "v1",
    }),
    containerStatus: (req) => {
      if (req.containerId !== CID) throw notFound(`container ${req.containerId}`);
      return { status: { id: CID, state: 1 } };
    },
    exec: (req) => ({ url: streams.getExec(req) }),
    attach: (req) => ({ url: streams.getAttach(req) }),
    portForward: (req) => ({ url: streams.getPortForward(req) }),
  });
  await grpc.listen(sock);
  try {
    await fn({ sock, runtime, streams, echoPort: echo.port });
  } finally {
    await grpc.shutdown({ timeoutMs: 1000 });
    await runtime.stop();
    await streams.close();
    await echo.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function crictl(f: Fixture, args: string[], input?: string) {
  return run(CRICTL, ["-r", `unix://${f.sock}`, "-t", "10s", ...args], {
    input: input === undefined ? undefined : new TextEncoder().encode(input),
  });
}

const text = (b: Uint8Array) => new TextDecoder().decode(b);

Deno.test("crictl exec: output, stderr and exit codes through SPDY", async () => {
  await withCri(async (f) => {
    const r = await crictl(f, ["exec", CID, "echo", "hi"]);
    assert.equal(text(r.stderr), "");
    assert.equal(r.code, 0);
    assert.equal(text(r.stdout), "hi\n");

    const e = await crictl(f, ["exec", CID, "sh", "-c", "echo out; echo err >&2; exit 3"]);
    // crictl 1.26 reports a remote exit code in its message and exits 1 itself.
    assert.equal(e.code, 1);
    assert.equal(text(e.stdout), "out\n");
    assert.match(text(e.stderr), /^err\n/);
    assert.match(text(e.stderr), /command terminated with exit code 3/);
    assert.deepEqual(f.runtime.seen.execs.map((x) => x.cmd), [
      ["echo", "hi"],
      ["sh", "-c", "echo out; echo err >&2; exit 3"],
    ]);
  });
});
