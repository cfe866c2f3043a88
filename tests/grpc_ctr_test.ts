/**
 * containerd's own `ctr` (Debian's 1.6.20) pointed at `berth daemon`'s gRPC
 * socket with `-a`: the command lines that work against containerd work
 * against berth unchanged, and what berth does not serve fails quickly
 * with Unimplemented. Every ctr run has a deadline, so a hang fails the
 * test instead of hanging it.
 */
import assert from "node:assert/strict";
import { Code, isCode } from "../src/errdefs/mod.ts";
import { Containers } from "../src/gen/containerd/services/containers/v1/containers_pb.ts";
import { Version } from "../src/gen/containerd/services/version/v1/version_pb.ts";
import { GrpcClient } from "../src/grpc/mod.ts";
import { run } from "../src/spawn/mod.ts";
import { VERSION } from "../src/version.ts";
import { daemonAt, type DaemonProc, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { buildBusyboxImage } from "./support/image.ts";
import { mountsUnder, unmountAllUnder } from "./support/mounts.ts";
import { findProcesses, isAlive, killNow } from "./support/proc.ts";
import { runTool, type ToolResult } from "./support/tool.ts";

const RUNC_SHIM_ROOT = "/run/containerd/runc";

/** ctr against `address` in namespace `ns`; fails the test if it runs over `timeoutMs`. */
async function ctr(
  address: string,
  ns: string,
  args: string[],
  timeoutMs = 60_000,
): Promise<ToolResult> {
  const r = await runTool("ctr", ["-a", address, "-n", ns, ...args], { timeoutMs });
  assert.notEqual(r.code, -1, `ctr ${args.join(" ")} hung:\n${r.stderr}`);
  return r;
}

async function ok(address: string, ns: string, args: string[]): Promise<string> {
  const r = await ctr(address, ns, args);
  assert.equal(r.code, 0, `ctr ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

/** Shims started for namespace `ns` (Debian's runc shim names it in its argv). */
function shimsOf(ns: string): number[] {
  return findProcesses((_pid, argv) =>
    argv.some((a) => a.includes("containerd-shim")) && argv.includes(ns)
  );
}

Deno.test("grpc: Debian's ctr drives berth daemon end to end", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-grpc-ctr-" });
  const ns = `gc${crypto.randomUUID().slice(0, 8)}`;
  const address = `${tmp}/state/berth.sock`;
  let daemon: DaemonProc | undefined;
  let events: Deno.ChildProcess | undefined;
  try {
    daemon = daemonAt(`${tmp}/root`, `${tmp}/state`, address);
    await waitForSocket(address, daemon);
    assert.equal((await Deno.stat(address)).mode! & 0o777, 0o600);

    const version = await ok(address, ns, ["version"]);
    assert.match(version, new RegExp(`Server:\\s+Version:\\s+${VERSION.replaceAll(".", "\\.")}`));
    const plugins = await ok(address, ns, ["plugins", "ls"]);
    for (const id of ["content", "overlayfs", "namespaces", "tasks", "events"]) {
      assert.match(plugins, new RegExp(`\\s${id}\\s.*ok`), plugins);
    }

    await ok(address, ns, ["namespaces", "create", `${ns}-x`, "team=a"]);
    assert.match(await ok(address, ns, ["namespaces", "ls"]), new RegExp(`${ns}-x\\s+team=a`));
    await ok(address, ns, ["namespaces", "rm", `${ns}-x`]);
    assert.doesNotMatch(await ok(address, ns, ["namespaces", "ls"]), new RegExp(`${ns}-x`));

    const img = await buildBusyboxImage(tmp);
    await ok(address, ns, ["images", "import", img.archive]);
    assert.match(
      await ok(address, ns, ["images", "ls"]),
      new RegExp(img.ref.replaceAll(".", "\\.")),
    );

    // Events of this namespace, seen by another ctr process while containers run.
    events = new Deno.Command("ctr", {
      args: ["-a", address, "events", `namespace==${ns}`],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).spawn();
    let seen = "";
    const reading = (async () => {
      const dec = new TextDecoder();
      for await (const chunk of events!.stdout) seen += dec.decode(chunk, { stream: true });
    })();
    await new Promise((r) => setTimeout(r, 300));

    assert.equal(await ok(address, ns, ["run", "--rm", img.ref, "c1", "echo", "hi"]), "hi\n");

    await ok(address, ns, ["run", "-d", img.ref, "c2", "sleep", "1000"]);
    assert.match(await ok(address, ns, ["tasks", "ls"]), /c2\s+\d+\s+RUNNING/);
    assert.equal(
      await ok(address, ns, ["tasks", "exec", "--exec-id", "e1", "c2", "echo", "from-exec"]),
      "from-exec\n",
    );
    // criu does not work on this machine: the answer is a prompt, clear failure.
    const checkpoint = await ctr(address, ns, ["tasks", "checkpoint", "c2"]);
    assert.notEqual(checkpoint.code, 0);
    assert.match(checkpoint.stderr, /ctr: .*checkpoint/);
    await ok(address, ns, ["tasks", "kill", "-s", "SIGKILL", "c2"]);
    for (let i = 0; i < 100; i++) {
      if (/c2\s+\d+\s+STOPPED/.test(await ok(address, ns, ["tasks", "ls"]))) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    await ok(address, ns, ["tasks", "delete", "c2"]);
    await ok(address, ns, ["containers", "rm", "c2"]);
    assert.doesNotMatch(await ok(address, ns, ["containers", "ls"]), /c2/);
    const missing = await ctr(address, ns, ["tasks", "delete", "c2"]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not found/);

    assert.match(await ok(address, ns, ["snapshots", "ls"]), /sha256:[0-9a-f]{64}\s+Committed/);
    assert.match(await ok(address, ns, ["content", "ls"]), /sha256:[0-9a-f]{64}/);
    await ok(address, ns, ["leases", "create", "--id", "l1", "team=b"]);
    assert.match(await ok(address, ns, ["leases", "ls"]), /^l1\s.*team=b/m);
    await ok(address, ns, ["leases", "rm", "l1"]);

    for (let i = 0; i < 50 && !/\/tasks\/exit.*"container_id":"c2"/.test(seen); i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    for (const topic of ["/containers/create", "/tasks/create", "/tasks/start", "/tasks/exit"]) {
      assert.match(seen, new RegExp(`${ns} ${topic} .*"c1"`), `${topic} of c1 in:\n${seen}`);
    }
    assert.match(seen, /\/tasks\/exec-started .*"exec_id":"e1"/);
    events.kill("SIGTERM");
    await events.status;
    await reading;
    events = undefined;

    // What berth does not serve is Unimplemented, answered at once.
    const client = new GrpcClient(address, { metadata: { "containerd-namespace": ns } });
    try {
      assert.equal((await client.unary(Version.method.version, {})).version, VERSION);
      const notServed = {
        ...Version.method.version,
        parent: { ...Version, typeName: "containerd.services.sandbox.v1.Store" },
      } as typeof Version.method.version;
      await assert.rejects(
        client.unary(notServed, {}, { timeoutMs: 5000 }),
        (e) =>
          isCode(e, Code.Unimplemented) &&
          /containerd\.services\.sandbox\.v1\.Store/.test(String(e)),
      );
      // Status codes travel as containerd's: a missing container is NotFound.
      await assert.rejects(
        client.unary(Containers.method.get, { id: "nope" }),
        (e) => isCode(e, Code.NotFound),
      );
    } finally {
      await client.close();
    }

    assert.equal((await stopDaemon(daemon)).code, 0, daemon.log());
    daemon = undefined;
    // An emptied shared shim waits for the next container until the daemon stops it.
    for (let i = 0; i < 100 && shimsOf(ns).length > 0; i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(shimsOf(ns), [], "no shim left");
    await assert.rejects(Deno.lstat(address), Deno.errors.NotFound);
    await assert.rejects(Deno.lstat(`${address}.ttrpc`), Deno.errors.NotFound);
    assert.deepEqual(mountsUnder(tmp), []);
  } catch (err) {
    throw new Error(
      `${err instanceof Error ? err.stack : err}\n--- daemon log ---\n${daemon?.log()}`,
    );
  } finally {
    if (events !== undefined) {
      try {
        events.kill("SIGKILL");
      } catch { /* gone */ }
      await events.status;
    }
    if (daemon !== undefined) await stopDaemon(daemon);
    await killNow(shimsOf(ns).filter(isAlive));
    let ids: string[] = [];
    try {
      ids = [...Deno.readDirSync(`${RUNC_SHIM_ROOT}/${ns}`)].map((e) => e.name);
    } catch { /* none */ }
    for (const id of ids) {
      await run("runc", ["--root", `${RUNC_SHIM_ROOT}/${ns}`, "delete", "--force", id]);
    }
    await Deno.remove(`${RUNC_SHIM_ROOT}/${ns}`, { recursive: true }).catch(() => {});
    unmountAllUnder(tmp);
    await Deno.remove(tmp, { recursive: true });
  }
});
