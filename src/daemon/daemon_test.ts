import assert from "node:assert/strict";
import {
  applyOverrides,
  configToToml,
  effectiveConfig,
  loadConfig,
  parseConfig,
  parseTcpAddress,
} from "../config/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { Version } from "../gen/containerd/services/version/v1/version_pb.ts";
import { GrpcClient } from "../grpc/mod.ts";
import { setLogSink } from "../log/mod.ts";
import { type Registration, RequiredPluginError } from "../plugin/mod.ts";
import { versionPlugin } from "../services/version/mod.ts";
import { runChecked } from "../spawn/mod.ts";
import { connect, serviceClient } from "../ttrpc/mod.ts";
import { VERSION } from "../version.ts";
import { startDaemon } from "./mod.ts";

async function withDirs(fn: (tmp: string, logs: string[]) => Promise<void>): Promise<void> {
  const tmp = await Deno.makeTempDir({ prefix: "berth-daemon-unit-" });
  const logs: string[] = [];
  setLogSink((l) => logs.push(l));
  try {
    await fn(tmp, logs);
  } finally {
    setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l)));
    await Deno.remove(tmp, { recursive: true });
  }
}

function configIn(tmp: string, extra = "") {
  const { config } = parseConfig(`version = 2\n${extra}`);
  return applyOverrides(config, {
    root: `${tmp}/root`,
    state: `${tmp}/state`,
    address: `${tmp}/state/b.sock`,
  });
}

Deno.test("daemon: serves the plugins' services; one daemon per root; stop removes the socket and frees the root", () =>
  withDirs(async (tmp, logs) => {
    const plugins: Registration[] = [versionPlugin];
    const d = await startDaemon(configIn(tmp), { plugins });
    assert.equal(d.ttrpcAddress, `${tmp}/state/b.sock.ttrpc`);
    const client = await connect(d.ttrpcAddress);
    assert.equal((await serviceClient(client, Version).version({})).version, VERSION);
    client.close();
    await assert.rejects(startDaemon(configIn(tmp), { plugins }), (e) => {
      assert.ok(isCode(e, Code.FailedPrecondition));
      assert.match(
        (e as Error).message,
        new RegExp(`root ${tmp}/root is in use by another berth daemon \\(pid ${Deno.pid}\\)`),
      );
      return true;
    });
    await d.stop();
    await d.stop(); // idempotent
    await assert.rejects(Deno.lstat(d.ttrpcAddress), Deno.errors.NotFound);
    const again = await startDaemon(configIn(tmp), { plugins });
    await again.stop();
    assert.ok(logs.some((l) => /level=info msg="berth stopped"/.test(l)));
  }));

Deno.test("daemon: stop shuts idle shims down while open connections are still served, new ones refused", () =>
  withDirs(async (tmp) => {
    // Stands in for the runtime plugin: at stop it shuts its idle shims
    // down, and a shim's event publisher, connected before, must still be
    // answered then (one is Go's: it waits 5 s for an answer, then exits 1).
    const seen: string[] = [];
    const peer: { publisher?: Awaited<ReturnType<typeof connect>>; address: string } = {
      address: "",
    };
    const runtime: Registration = {
      type: "io.containerd.runtime.v2",
      id: "task",
      init: () => ({
        retireIdleShims: async () => {
          const v = await serviceClient(peer.publisher!, Version).version({}, { timeoutMs: 2000 });
          seen.push(`open connection served: ${v.version}`);
          await connect(peer.address).then(
            (c) => {
              c.close();
              seen.push("new connection accepted");
            },
            () => seen.push("new connection refused"),
          );
        },
      }),
    };
    const d = await startDaemon(configIn(tmp), { plugins: [versionPlugin, runtime] });
    peer.address = d.ttrpcAddress;
    peer.publisher = await connect(d.ttrpcAddress);
    await d.stop();
    peer.publisher.close();
    assert.deepEqual(seen, [`open connection served: ${VERSION}`, "new connection refused"]);
  }));

Deno.test("daemon: a required plugin that fails stops start-up and leaves no socket and no lock", () =>
  withDirs(async (tmp, logs) => {
    const broken: Registration = {
      type: "t.x.v1",
      id: "broken",
      required: true,
      init: () => {
        throw new Error("no way");
      },
    };
    let closed = 0;
    const first: Registration = {
      type: "t.a.v1",
      id: "a",
      init: () => 1,
      close: () => void closed++,
    };
    await assert.rejects(startDaemon(configIn(tmp), { plugins: [first, broken] }), (e) => {
      assert.ok(e instanceof RequiredPluginError);
      assert.match(e.message, /load required plugin t\.x\.v1\.broken: no way/);
      return true;
    });
    assert.equal(closed, 1, "plugins loaded before the failure are closed");
    await assert.rejects(Deno.lstat(`${tmp}/state/b.sock.ttrpc`), Deno.errors.NotFound);
    // Configured as required but not there at all.
    await assert.rejects(
      startDaemon(configIn(tmp, `required_plugins = ["io.containerd.grpc.v1.nope"]`), {
        plugins: [first],
      }),
      /required plugin io\.containerd\.grpc\.v1\.nope is not registered/,
    );
    // The root is free again.
    const d = await startDaemon(configIn(tmp, `[plugins."io.example.v1.mystery"]\nx = 1\n`), {
      plugins: [first],
    });
    await d.stop();
    assert.ok(
      logs.some((l) =>
        /config has a section for a plugin berth does not have.*io\.example\.v1\.mystery/.test(l)
      ),
    );
  }));

Deno.test("daemon: a live socket at the address is not taken over", () =>
  withDirs(async (tmp) => {
    await Deno.mkdir(`${tmp}/state`, { recursive: true });
    const other = Deno.listen({ transport: "unix", path: `${tmp}/state/b.sock.ttrpc` });
    try {
      await assert.rejects(
        startDaemon(configIn(tmp), { plugins: [versionPlugin] }),
        /in use by a running server/,
      );
      const d = await startDaemon(
        applyOverrides(configIn(tmp), { root: `${tmp}/root`, address: `${tmp}/elsewhere/b.sock` }),
        { plugins: [versionPlugin] },
      );
      assert.equal(
        (await Deno.stat(`${tmp}/elsewhere`)).mode! & 0o777,
        0o700,
        "a missing socket directory is made private",
      );
      await d.stop();
    } finally {
      other.close();
    }
  }));

/** A TCP port nobody listens on now. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Resolves true when something accepts connections on 127.0.0.1:`port`. */
async function listening(port: number): Promise<boolean> {
  try {
    (await Deno.connect({ hostname: "127.0.0.1", port })).close();
    return true;
  } catch {
    return false;
  }
}

Deno.test("daemon: grpc.tcp_address serves gRPC over plaintext TCP as well as the socket; config dump shows it", () =>
  withDirs(async (tmp, logs) => {
    const port = freePort();
    const extra = `[grpc]\ntcp_address = "127.0.0.1:${port}"\n`;
    await Deno.writeTextFile(`${tmp}/c.toml`, `version = 2\n${extra}`);
    const { config } = await loadConfig(`${tmp}/c.toml`, {});
    assert.match(
      configToToml(effectiveConfig(config)),
      new RegExp(`tcp_address = "127\\.0\\.0\\.1:${port}"`),
    );

    const d = await startDaemon(configIn(tmp, extra), { plugins: [versionPlugin] });
    try {
      assert.equal(d.grpcTcpAddress?.port, port);
      for (const address of [`tcp://127.0.0.1:${port}`, d.grpcAddress]) {
        const client = new GrpcClient(address);
        try {
          assert.equal((await client.unary(Version.method.version, {})).version, VERSION, address);
        } finally {
          await client.close();
        }
      }
      assert.ok(logs.some((l) => /plaintext TCP/.test(l)));
    } finally {
      await d.stop();
    }
    assert.equal(await listening(port), false, "the port is closed after stop");

    // A port in use stops start-up, and leaves neither socket nor lock behind.
    const taken = Deno.listen({ hostname: "127.0.0.1", port });
    try {
      await assert.rejects(
        startDaemon(configIn(tmp, extra), { plugins: [versionPlugin] }),
        (e) => isCode(e, Code.AlreadyExists) && /grpc\.tcp_address/.test(String(e)),
      );
    } finally {
      taken.close();
    }
    await assert.rejects(Deno.lstat(`${tmp}/state/b.sock`), Deno.errors.NotFound);
    await (await startDaemon(configIn(tmp), { plugins: [versionPlugin] })).stop();
  }));

Deno.test("daemon: grpc.tcp_address with tcp_tls_cert/key serves TLS; tcp_tls_ca and bad addresses refuse to start", () =>
  withDirs(async (tmp) => {
    // A throw-away self-signed certificate for 127.0.0.1.
    await runChecked("openssl", [
      ..."req -x509 -nodes -days 1 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1".split(" "),
      ..."-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1".split(" "),
      ...["-keyout", `${tmp}/key.pem`, "-out", `${tmp}/cert.pem`],
    ]);
    const port = freePort();
    const tls = `tcp_tls_cert = "${tmp}/cert.pem"\ntcp_tls_key = "${tmp}/key.pem"\n`;
    const d = await startDaemon(
      configIn(tmp, `[grpc]\ntcp_address = "127.0.0.1:${port}"\n${tls}`),
      { plugins: [versionPlugin] },
    );
    try {
      const ca = await Deno.readTextFile(`${tmp}/cert.pem`);
      const client = new GrpcClient(`tcp://127.0.0.1:${port}`, { tls: { ca } });
      try {
        assert.equal((await client.unary(Version.method.version, {})).version, VERSION);
      } finally {
        await client.close();
      }
      // A plaintext client gets no answer from the TLS port.
      const plain = new GrpcClient(`tcp://127.0.0.1:${port}`);
      try {
        await assert.rejects(plain.unary(Version.method.version, {}, { timeoutMs: 5000 }));
      } finally {
        await plain.close();
      }
    } finally {
      await d.stop();
    }

    const refused: Array<[string, RegExp]> = [
      [`tcp_address = "127.0.0.1:${port}"\ntcp_tls_ca = "${tmp}/cert.pem"\n${tls}`, /mutual TLS/],
      [`tcp_address = "127.0.0.1:${port}"\ntcp_tls_cert = "${tmp}/cert.pem"\n`, /go together/],
      [`tcp_address = "127.0.0.1"`, /grpc\.tcp_address: "127\.0\.0\.1" is not a TCP address/],
      [`tcp_address = "127.0.0.1:70000"`, /is not a TCP address/],
    ];
    for (const [grpc, why] of refused) {
      assert.throws(
        () => configIn(tmp, `[grpc]\n${grpc}`),
        (e) => isCode(e, Code.InvalidArgument) && why.test(String(e)),
        grpc,
      );
    }
    assert.equal(await listening(port), false);
    // The address forms containerd's config takes.
    assert.deepEqual(parseTcpAddress("[::1]:10010"), { hostname: "::1", port: 10010 });
    assert.deepEqual(parseTcpAddress(":10010"), { hostname: "0.0.0.0", port: 10010 });
    assert.deepEqual(parseTcpAddress("localhost:1"), { hostname: "localhost", port: 1 });
  }));
