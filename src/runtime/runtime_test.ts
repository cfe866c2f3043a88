/**
 * Unit tests of the runtime v2 pieces that need no real shim: address
 * parsing, bundle layout, binary lookup, the log fifo, and the manager's
 * undo on a failed start and its recovery of a dead shim's bundle (with
 * small shell scripts standing in for shims).
 */
import assert from "node:assert/strict";
import { fromBinary } from "@bufbuild/protobuf";
import { defaultConfig } from "../config/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { Exchange, Topic } from "../events/mod.ts";
import { TaskExitSchema } from "../gen/containerd/events/task_pb.ts";
import { OptionsSchema } from "../gen/containerd/runc/v1/options_pb.ts";
import {
  bundleOf,
  configRuntimeOptions,
  createBundle,
  deleteBundle,
  openShimLog,
  parseShimAddress,
  resolveShimBinary,
  TaskManager,
} from "./mod.ts";
import { exists } from "../fsutil/mod.ts";

const SPEC = new TextEncoder().encode(JSON.stringify({ ociVersion: "1.0.2", process: {} }));

function hasCode(code: Code, re?: RegExp) {
  return (e: unknown) => {
    assert.ok(isCode(e, code), `expected ${Code[code]}, got ${e instanceof Error ? e.message : e}`);
    if (re) assert.match((e as Error).message, re);
    return true;
  };
}

Deno.test("parseShimAddress: bare and unix:// addresses, bootstrap JSON, and what is not an address", () => {
  assert.equal(parseShimAddress("unix:///run/x/s/abc\n"), "unix:///run/x/s/abc");
  assert.equal(parseShimAddress("/run/x/s/abc"), "/run/x/s/abc");
  assert.equal(
    parseShimAddress('{"version":2,"address":"unix:///run/s/1","protocol":"ttrpc"}'),
    "unix:///run/s/1",
  );
  assert.throws(
    () => parseShimAddress('{"version":3,"address":"unix:///run/s/1","protocol":"grpc"}'),
    hasCode(Code.Unimplemented, /grpc/),
  );
  assert.throws(() => parseShimAddress("panic: oops"), hasCode(Code.Internal, /no socket address/));
});

Deno.test("bundle: containerd's layout, refused twice, removed whole; bad id or spec leaves nothing", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-bundle-test-" });
  try {
    const b = await createBundle(`${tmp}/root`, `${tmp}/state`, "ns1", "task1", SPEC);
    assert.equal(b.path, `${tmp}/state/ns1/task1`);
    assert.equal((await Deno.stat(b.path)).mode! & 0o777, 0o700);
    assert.equal((await Deno.stat(`${b.path}/rootfs`)).mode! & 0o777, 0o711);
    assert.equal(await Deno.readLink(`${b.path}/work`), `${tmp}/root/ns1/task1`);
    assert.deepEqual(await Deno.readFile(`${b.path}/config.json`), SPEC);
    await assert.rejects(
      createBundle(`${tmp}/root`, `${tmp}/state`, "ns1", "task1", SPEC),
      hasCode(Code.AlreadyExists),
    );
    await deleteBundle(b);
    assert.ok(!(await exists(b.path)));
    assert.ok(!(await exists(`${tmp}/root/ns1/task1`)));
    await deleteBundle(b); // already gone: fine

    await assert.rejects(
      createBundle(`${tmp}/root`, `${tmp}/state`, "ns1", "../escape", SPEC),
      hasCode(Code.InvalidArgument),
    );
    await assert.rejects(
      createBundle(`${tmp}/root`, `${tmp}/state`, "ns1", "t2", new TextEncoder().encode("{nope")),
      hasCode(Code.InvalidArgument, /not valid JSON/),
    );
    assert.ok(!(await exists(`${tmp}/state/ns1/t2`)));
    assert.ok(!(await exists(`${tmp}/root/ns1/t2`)));
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("resolveShimBinary: PATH, absolute paths, and a clear NotFound", async () => {
  const found = await resolveShimBinary("io.containerd.runc.v2", "sh");
  assert.match(found, /^\/.*\/sh$/);
  await assert.rejects(
    resolveShimBinary("rt", "/nonexistent/containerd-shim-x-v1"),
    hasCode(Code.NotFound, /not installed/),
  );
  await assert.rejects(
    resolveShimBinary("io.containerd.nope.v1", "containerd-shim-nope-v1"),
    hasCode(Code.NotFound, /containerd-shim-nope-v1 not installed/),
  );
});

Deno.test("openShimLog: never blocks on a missing writer, copies, and closes promptly", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-shimlog-test-" });
  try {
    const log = await openShimLog(tmp);
    assert.ok((await Deno.lstat(`${tmp}/log`)).isFifo);
    const w = await Deno.open(`${tmp}/log`, { write: true });
    await w.write(new TextEncoder().encode("")); // a writer may come and go
    w.close();
    await log.close();
    await log.close(); // twice is fine
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** A shell script standing in for a shim binary. */
async function fakeShim(dir: string, body: string): Promise<string> {
  const path = `${dir}/containerd-shim-fake-v1`;
  await Deno.writeTextFile(path, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return path;
}

function manager(tmp: string, events = new Exchange()): TaskManager {
  return new TaskManager({
    root: `${tmp}/root`,
    state: `${tmp}/state`,
    env: {
      address: `${tmp}/berth.sock`,
      ttrpcAddress: `${tmp}/berth.sock.ttrpc`,
      publishBinary: "/bin/true",
      debug: false,
    },
    events,
    config: defaultConfig(),
  });
}

Deno.test("TaskManager.create: a shim whose start fails leaves no bundle; unknown runtimes are NotFound", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-manager-test-" });
  const m = manager(tmp);
  try {
    const shim = await fakeShim(
      tmp,
      'case "$*" in *start*) echo "no luck here" >&2; exit 1;; esac',
    );
    const opts = {
      spec: SPEC,
      runtime: "io.containerd.fake.v1",
      runtimePath: shim,
      rootfs: [],
      stdin: "",
      stdout: "",
      stderr: "",
      terminal: false,
    };
    await assert.rejects(m.create("ns1", "t1", opts), hasCode(Code.Unknown, /no luck here/));
    assert.ok(!(await exists(`${tmp}/state/ns1/t1`)));
    assert.ok(!(await exists(`${tmp}/root/ns1/t1`)));
    await assert.rejects(
      m.create("ns1", "t1", { ...opts, runtimePath: undefined, runtime: "nope" }),
      hasCode(Code.NotFound, /nope/),
    );
    assert.ok(!(await exists(`${tmp}/state/ns1/t1`)));
    assert.throws(() => m.get("ns1", "t1"), hasCode(Code.NotFound));
  } finally {
    await m.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("TaskManager.recover: a bundle whose shim is gone is cleaned up and its exit published", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "berth-manager-test-" });
  const events = new Exchange();
  const sub = events.subscribe([`topic=="${Topic.TaskExit}"`]);
  const m = manager(tmp, events);
  try {
    // The delete action prints an empty DeleteResponse (all defaults) and notes that it ran.
    const shim = await fakeShim(tmp, `case "$*" in *delete*) touch "${tmp}/deleted";; esac`);
    const b = await createBundle(`${tmp}/root`, `${tmp}/state`, "ns1", "gone", SPEC);
    await Deno.writeTextFile(`${b.path}/address`, `unix://${tmp}/no-such-shim.sock`);
    await Deno.writeTextFile(`${b.path}/shim-binary-path`, shim);
    // An empty bundle directory and a stray work directory are removed too.
    await Deno.mkdir(`${tmp}/state/ns1/empty`);
    await Deno.mkdir(`${tmp}/root/ns1/stray`, { recursive: true });
    await m.recover();
    assert.ok(await exists(`${tmp}/deleted`), "the shim's delete action ran");
    assert.ok(!(await exists(bundleOf(`${tmp}/state`, "ns1", "gone").path)));
    assert.ok(!(await exists(`${tmp}/root/ns1/gone`)));
    assert.ok(!(await exists(`${tmp}/state/ns1/empty`)));
    assert.ok(!(await exists(`${tmp}/root/ns1/stray`)));
    assert.deepEqual(m.list("ns1"), []);
    const { value } = await sub.next();
    assert.equal(value.namespace, "ns1");
    const exit = fromBinary(TaskExitSchema, value.event.value);
    assert.equal(exit.containerId, "gone");
    assert.equal(exit.id, "gone");
  } finally {
    await sub.return?.(undefined);
    await m.close();
    events.close();
    await Deno.remove(tmp, { recursive: true });
  }
});

Deno.test("configRuntimeOptions: the runtimes table's options as containerd.runc.v1.Options", () => {
  assert.equal(configRuntimeOptions("runc", "io.containerd.runc.v2", {}), undefined);
  assert.equal(configRuntimeOptions("x", "io.containerd.other.v1", { A: 1 }), undefined);
  const any = configRuntimeOptions("runc", "io.containerd.runc.v2", {
    BinaryName: "/usr/sbin/runc",
    SystemdCgroup: true,
  })!;
  // As containerd marshals it: Debian's shim refuses the type.googleapis.com/ form.
  assert.equal(any.typeUrl, "containerd.runc.v1.Options");
  const o = fromBinary(OptionsSchema, any.value);
  assert.equal(o.binaryName, "/usr/sbin/runc");
  assert.equal(o.systemdCgroup, true);
  assert.throws(
    () => configRuntimeOptions("runc", "io.containerd.runc.v2", { NoSuchOption: 1 }),
    hasCode(Code.InvalidArgument, /runtimes table/),
  );
});
