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
import { forwardedPort, LocalRuntime, startEchoServer } from "./support/streaming.ts";

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
const shellQuote = (a: string) => `'${a.replaceAll("'", "'\\''")}'`;

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

Deno.test("crictl exec -i: stdin reaches the command and its end closes stdin", async () => {
  await withCri(async (f) => {
    const r = await crictl(
      f,
      ["exec", "-i", CID, "sh", "-c", "tr a-z A-Z; echo done"],
      "hello\nworld\n",
    );
    assert.equal(r.code, 0, text(r.stderr));
    assert.equal(text(r.stdout), "HELLO\nWORLD\ndone\n");
  });
});

Deno.test("crictl exec -it: a terminal, and the client's size reaches the pty", async () => {
  await withCri(async (f) => {
    // The size arrives on the resize stream while the command runs: wait for it (up to 5 s).
    const remote = 'tty; i=0; while [ "$(stty size)" != "27 91" ] && [ $i -lt 100 ]; do ' +
      "sleep 0.05; i=$((i+1)); done; echo size $(stty size)";
    const argv = [CRICTL, "-r", `unix://${f.sock}`, "-t", "10s", "exec", "-it", CID, "sh", "-c"];
    const inner = [...argv, remote].map(shellQuote).join(" ");
    const r = await run("script", ["-qec", `stty cols 91 rows 27; ${inner}`, "/dev/null"], {
      input: new TextEncoder().encode(""),
    });
    const out = text(r.stdout);
    assert.equal(r.code, 0, out + text(r.stderr));
    assert.match(out, /\/dev\/pts\/\d+\r?\n/);
    assert.match(out, /size 27 91\r?\n/);
    assert.deepEqual(f.runtime.seen.execs[0].tty, true);
    assert.ok(
      f.runtime.seen.resizes.some((s) => s.width === 91 && s.height === 27),
      `resizes: ${JSON.stringify(f.runtime.seen.resizes)}`,
    );
  });
});

Deno.test("crictl attach -i: streams to the attached process", async () => {
  await withCri(async (f) => {
    const r = await crictl(f, ["attach", "-i", CID], "there\n");
    assert.equal(r.code, 0, text(r.stderr));
    assert.equal(text(r.stdout), "attached\ngot there\n");
  });
});

Deno.test("crictl port-forward: connections reach the echo server through SPDY", async () => {
  await withCri(async (f) => {
    const child = spawn(CRICTL, [
      "-r",
      `unix://${f.sock}`,
      "port-forward",
      SANDBOX,
      `0:${f.echoPort}`,
    ], { stdout: "piped", stderr: "piped" });
    try {
      const local = await forwardedPort(child);
      for (const msg of ["first", "second connection"]) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: local });
        await conn.write(new TextEncoder().encode(msg));
        await conn.closeWrite();
        const got = text(new Uint8Array(await new Response(conn.readable).arrayBuffer()));
        assert.equal(got, msg);
      }
      assert.deepEqual(f.runtime.seen.forwards, [
        { sandbox: SANDBOX, port: f.echoPort },
        { sandbox: SANDBOX, port: f.echoPort },
      ]);
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await child.stderr.cancel().catch(() => {});
    }
  });
});
