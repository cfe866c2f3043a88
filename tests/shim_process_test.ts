/**
 * The shim's container/process model over real runc, without containerd:
 * exits and orphans, IO kinds (fifo, file://, binary://), signals through
 * pidfds, and runc's errors passed on. The test process plays the shim: it
 * is a child subreaper, as the serve process is, for each test's length
 * only, since the test files after this one share the process and their
 * detached shims must go to tini, which reaps them, not to it.
 */

import assert from "node:assert/strict";
import { BerthError, Code } from "../src/errdefs/mod.ts";
import { Container, type ContainerEnv } from "../src/shim/container.ts";
import { packEvent } from "../src/events/mod.ts";
import { OptionsSchema } from "../src/gen/containerd/runc/v1/options_pb.ts";
import type { Process } from "../src/shim/process.ts";
import { Reaper } from "../src/shim/reaper.ts";
import {
  close as closeFd,
  mkfifo,
  openFifo,
  readFd,
  setChildSubreaper,
  writeFd,
} from "../ffi/mod.ts";
import { makeBundle } from "./support/bundle.ts";

const NS = `shimtest${crypto.randomUUID().slice(0, 6)}`;

interface Fixture {
  dir: string;
  env: ContainerEnv;
  reaper: Reaper;
  exits: { id: string; status: number }[];
}

async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-shimproc-" });
  setChildSubreaper(true);
  const reaper = new Reaper();
  reaper.start();
  const exits: { id: string; status: number }[] = [];
  const env: ContainerEnv = {
    namespace: NS,
    reaper,
    debug: false,
    onExit: (c: Container, p: Process) =>
      exits.push({ id: p.execId || c.id, status: p.exit!.status }),
  };
  try {
    await fn({ dir, env, reaper, exits });
  } finally {
    reaper.stop();
    setChildSubreaper(false);
    await Deno.remove(`/run/berth/runc/${NS}`, { recursive: true }).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
}

async function bundle(
  dir: string,
  name: string,
  args: string[],
  edit?: (spec: Record<string, unknown>) => void,
): Promise<string> {
  const b = `${dir}/${name}`;
  await makeBundle(b, { args });
  if (edit) {
    const spec = JSON.parse(await Deno.readTextFile(`${b}/config.json`));
    edit(spec);
    await Deno.writeTextFile(`${b}/config.json`, JSON.stringify(spec));
  }
  return b;
}

/** Zombie children of this process (what a reaper that misses exits would leave). */
function zombieChildren(): number[] {
  const out: number[] = [];
  for (const t of Deno.readDirSync(`/proc/${Deno.pid}/task`)) {
    const kids = Deno.readTextFileSync(`/proc/${Deno.pid}/task/${t.name}/children`).trim();
    for (const pid of kids ? kids.split(" ").map(Number) : []) {
      try {
        const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
        if (stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) === "Z") out.push(pid);
      } catch { /* gone */ }
    }
  }
  return out;
}

async function readAllFrom(path: string): Promise<string> {
  const f = await Deno.open(path, { read: true });
  return await new Response(f.readable).text();
}

Deno.test("process: a fast exit is never lost; its output is complete before the exit is reported", async () => {
  await withFixture(async ({ dir, env, exits }) => {
    const b = await bundle(dir, "b1", [
      "sh",
      "-c",
      "i=0; while [ $i -lt 2000 ]; do echo line-$i; i=$((i+1)); done; exit 3",
    ]);
    mkfifo(`${dir}/out`, 0o600);
    const text = readAllFrom(`${dir}/out`);
    const c = await Container.create({
      id: "p1",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: `${dir}/out`, stderr: "", terminal: false },
      checkpoint: "",
    }, env);
    await c.start("", () => {});
    const exit = await c.init.exited;
    assert.equal(exit.status, 3);
    assert.deepEqual(exits, [{ id: "p1", status: 3 }]);
    await c.delete("");
    const out = await text;
    assert.equal(out.split("\n").length, 2001);
    assert.ok(out.endsWith("line-1999\n"));
    assert.deepEqual(zombieChildren(), []);
  });
});

Deno.test("process: orphans left by a container without its own pid namespace are reaped", async () => {
  await withFixture(async ({ dir, env, reaper }) => {
    const b = await bundle(
      dir,
      "b2",
      ["sh", "-c", "(sleep 0.2 &); (sleep 0.3 &); exit 0"],
      (spec) => {
        const linux = spec.linux as { namespaces: { type: string }[] };
        linux.namespaces = linux.namespaces.filter((n) => n.type !== "pid");
      },
    );
    const c = await Container.create({
      id: "p2",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
      checkpoint: "",
    }, env);
    await c.start("", () => {});
    assert.equal((await c.init.exited).status, 0);
    await c.delete("");
    const deadline = Date.now() + 5000;
    while (reaper.orphansReaped < 2 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(reaper.orphansReaped >= 2, `orphans reaped: ${reaper.orphansReaped}`);
    assert.deepEqual(zombieChildren(), []);
  });
});

Deno.test("process: exec, kill through the pidfd, NotFound once it is gone, duplicate exec id", async () => {
  await withFixture(async ({ dir, env, exits }) => {
    const b = await bundle(dir, "b3", ["sleep", "60"]);
    const c = await Container.create({
      id: "p3",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
      checkpoint: "",
    }, env);
    try {
      await c.start("", () => {});
      await assert.rejects(
        c.start("", () => {}),
        (e) => e instanceof BerthError && e.code === Code.FailedPrecondition,
      );
      const spec = {
        $typeName: "google.protobuf.Any" as const,
        typeUrl: "p",
        value: new TextEncoder().encode(JSON.stringify({ args: ["/bin/sleep", "60"], cwd: "/" })),
      };
      c.exec("e1", { stdin: "", stdout: "", stderr: "", terminal: false }, spec);
      assert.throws(
        () => c.exec("e1", { stdin: "", stdout: "", stderr: "", terminal: false }, spec),
        (e) => e instanceof BerthError && e.code === Code.AlreadyExists,
      );
      assert.throws(
        () => c.process("nope"),
        (e) => e instanceof BerthError && e.code === Code.NotFound,
      );
      await assert.rejects(
        c.kill("e1", 15, false),
        (e) => e instanceof BerthError && e.code === Code.FailedPrecondition,
      );
      const started: string[] = [];
      await c.start("e1", (p) => started.push(p.execId));
      assert.deepEqual(started, ["e1"]);
      assert.ok(c.process("e1").pid > 0);
      await c.kill("e1", 9, false);
      assert.equal((await c.process("e1").exited).status, 137);
      await assert.rejects(
        c.kill("e1", 9, false),
        (e) => e instanceof BerthError && e.code === Code.NotFound,
      );
      await c.delete("e1");
      assert.throws(
        () => c.process("e1"),
        (e) => e instanceof BerthError && e.code === Code.NotFound,
      );
      await assert.rejects(
        c.delete(""),
        (e) => e instanceof BerthError && e.code === Code.FailedPrecondition,
      );
      await c.pause();
      assert.equal(c.stateOf(c.init), "paused");
      await c.resume();
      await c.update({
        $typeName: "google.protobuf.Any",
        typeUrl: "r",
        value: new TextEncoder().encode(JSON.stringify({ pids: { limit: 100 } })),
      });
      await assert.rejects(
        c.checkpoint(`${dir}/ckpt`, { exit: false, workPath: "" }),
        (e) => {
          assert.ok(e instanceof BerthError && e.code === Code.FailedPrecondition, String(e));
          assert.match(e.message, /criu/i);
          return true;
        },
      );
      await c.kill("", 9, false);
      assert.equal((await c.init.exited).status, 137);
      assert.deepEqual(exits.map((e) => e.id), ["e1", "p3"]);
    } finally {
      if (c.init.state !== "deleted") {
        await c.kill("", 9, true).catch(() => {});
        await c.init.exited;
        await c.delete("");
      }
    }
    assert.deepEqual(zombieChildren(), []);
  });
});

Deno.test("process: file:// and binary:// output", async () => {
  await withFixture(async ({ dir, env }) => {
    const b = await bundle(dir, "b4", ["sh", "-c", "echo to-out; echo to-err >&2"]);
    const log = `${dir}/logs/c.log`;
    const c = await Container.create({
      id: "p4",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: `file://${log}`, stderr: `file://${log}`, terminal: false },
      checkpoint: "",
    }, env);
    await c.start("", () => {});
    await c.init.exited;
    await c.delete("");
    assert.deepEqual((await Deno.readTextFile(log)).split("\n").filter((l) => l).sort(), [
      "to-err",
      "to-out",
    ]);

    // A logging program with containerd's protocol: fd 3 stdout, fd 4 stderr, fd 5 closed when ready.
    const logger = `${dir}/logger`;
    await Deno.writeTextFile(
      logger,
      `#!/bin/sh\nexec 5>&-\necho "$CONTAINER_NAMESPACE/$CONTAINER_ID $*" > ${dir}/logger.info\ncat <&3 > ${dir}/logger.out &\ncat <&4 > ${dir}/logger.err\nwait\n`,
      { mode: 0o755 },
    );
    const b5 = await bundle(dir, "b5", ["sh", "-c", "echo bin-out; echo bin-err >&2"]);
    const c5 = await Container.create({
      id: "p5",
      bundle: b5,
      rootfs: [],
      stdio: {
        stdin: "",
        stdout: `binary://${logger}?level=debug`,
        stderr: `binary://${logger}?level=debug`,
        terminal: false,
      },
      checkpoint: "",
    }, env);
    await c5.start("", () => {});
    await c5.init.exited;
    await c5.delete("");
    assert.equal((await Deno.readTextFile(`${dir}/logger.info`)).trim(), `${NS}/p5 level debug`);
    assert.equal(await Deno.readTextFile(`${dir}/logger.out`), "bin-out\n");
    assert.equal(await Deno.readTextFile(`${dir}/logger.err`), "bin-err\n");
  });
});

Deno.test("process: a broken bundle fails Create with runc's own message and leaves nothing", async () => {
  await withFixture(async ({ dir, env }) => {
    const b = await bundle(dir, "b6", ["/no/such/binary"]);
    await assert.rejects(
      Container.create({
        id: "p6",
        bundle: b,
        rootfs: [],
        stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
        checkpoint: "",
      }, env),
      (e) =>
        e instanceof Error &&
        /OCI runtime create failed: .*no such file or directory/.test(e.message),
    );
    assert.deepEqual([...Deno.readDirSync(`/run/berth/runc/${NS}`)], []);
    assert.deepEqual(zombieChildren(), []);
  });
});

Deno.test("process: runtime options choose the binary (BinaryName) and its state root (Root)", async () => {
  await withFixture(async ({ dir, env }) => {
    const wrapper = `${dir}/my-runc`;
    await Deno.writeTextFile(wrapper, `#!/bin/sh\necho "$@" >> ${dir}/calls\nexec runc "$@"\n`, {
      mode: 0o755,
    });
    const b = await bundle(dir, "b7", ["true"]);
    const c = await Container.create({
      id: "p7",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
      checkpoint: "",
      options: packEvent(OptionsSchema, {
        binaryName: wrapper,
        root: `${dir}/rroot`,
        noNewKeyring: true,
      }),
    }, env);
    assert.ok(Deno.statSync(`${dir}/rroot/${NS}/p7/state.json`).isFile);
    await c.start("", () => {});
    await c.init.exited;
    await c.delete("");
    const calls = await Deno.readTextFile(`${dir}/calls`);
    assert.match(calls, new RegExp(`--root ${dir}/rroot/${NS} .*create .*--no-new-keyring`));
    assert.match(calls, /start p7/);
    assert.match(calls, /delete p7/);
    // An options type berth does not know is refused, not ignored.
    await assert.rejects(
      Container.create({
        id: "p8",
        bundle: b,
        rootfs: [],
        stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
        checkpoint: "",
        options: {
          $typeName: "google.protobuf.Any",
          typeUrl: "containerd.linux.runc.RuncOptions",
          value: new Uint8Array(),
        },
      }, env),
      (e) => e instanceof BerthError && e.code === Code.InvalidArgument,
    );
  });
});

Deno.test("process: a runtime that cannot start fails kill --all as Internal, not NotFound", async () => {
  // NotFound means "already gone" to containerd's client, which then waits for an exit for ever.
  await withFixture(async ({ dir, env }) => {
    const wrapper = `${dir}/gone-runc`;
    const script = `#!/bin/sh\nexec runc "$@"\n`;
    await Deno.writeTextFile(wrapper, script, { mode: 0o755 });
    const b = await bundle(dir, "b9", ["sleep", "1000"]);
    const c = await Container.create({
      id: "p9",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
      checkpoint: "",
      options: packEvent(OptionsSchema, { binaryName: wrapper }),
    }, env);
    try {
      await c.start("", () => {});
      await Deno.remove(wrapper);
      await assert.rejects(
        c.kill("", 9, true),
        (e) =>
          e instanceof BerthError && e.code === Code.Internal &&
          /OCI runtime kill failed/.test(e.message),
      );
      assert.equal(c.init.state, "running");
    } finally {
      await Deno.writeTextFile(wrapper, script, { mode: 0o755 });
      await c.kill("", 9, true);
      await c.init.exited;
      await c.delete("");
    }
    assert.deepEqual([...Deno.readDirSync(`/run/berth/runc/${NS}`)], []);
    assert.deepEqual(zombieChildren(), []);
  });
});

Deno.test("process: an exec with a terminal: input, resize (TIOCSWINSZ), output, CloseIO hangs it up", async () => {
  await withFixture(async ({ dir, env }) => {
    const b = await bundle(dir, "b9", ["sleep", "60"]);
    const c = await Container.create({
      id: "p9",
      bundle: b,
      rootfs: [],
      stdio: { stdin: "", stdout: "", stderr: "", terminal: false },
      checkpoint: "",
    }, env);
    try {
      await c.start("", () => {});
      mkfifo(`${dir}/tin`, 0o600);
      mkfifo(`${dir}/tout`, 0o600);
      // The client's ends, opened while the shim opens its own.
      const clientIn = Deno.open(`${dir}/tin`, { write: true });
      const clientOut = Deno.open(`${dir}/tout`, { read: true });
      const spec = {
        $typeName: "google.protobuf.Any" as const,
        typeUrl: "p",
        value: new TextEncoder().encode(JSON.stringify({
          // The hangup wakes the blocked read before SIGHUP is sent: the shell
          // may see end of input first, so that ends it too (status 3, not 0).
          args: [
            "/bin/sh",
            "-c",
            "read l; echo got-$l; stty size; read l2 || exit 3; echo never-$l2",
          ],
          cwd: "/",
          env: ["PATH=/bin"],
        })),
      };
      c.exec(
        "t1",
        { stdin: `${dir}/tin`, stdout: `${dir}/tout`, stderr: "", terminal: true },
        spec,
      );
      await c.start("t1", () => {});
      const [win, wout] = await Promise.all([clientIn, clientOut]);
      let out = "";
      const reading = (async () => {
        const buf = new Uint8Array(4096);
        for (;;) {
          const n = await wout.read(buf);
          if (n === null) break;
          out += new TextDecoder().decode(buf.subarray(0, n));
        }
      })();
      c.process("t1").resize(50, 20);
      await win.write(new TextEncoder().encode("xyz\n"));
      const deadline = Date.now() + 10_000;
      while (!out.includes("20 50") && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      assert.match(out, /got-xyz/);
      assert.match(out, /20 50/);
      // The client is done: its end closes and CloseIO comes; the terminal is hung up and the shell ends.
      win.close();
      c.process("t1").closeStdin();
      const exit = await c.process("t1").exited;
      assert.notEqual(exit.status, 0);
      assert.doesNotMatch(out, /never-/);
      await c.delete("t1");
      await reading;
      wout.close();
    } finally {
      await c.kill("", 9, true).catch(() => {});
      await c.init.exited;
      await c.delete("");
    }
    assert.deepEqual(zombieChildren(), []);
  });
});

Deno.test("process: 40 containers in one shim with idle stdin fifos (no blocking thread held per fifo)", async () => {
  await withFixture(async ({ dir, env }) => {
    const b = await bundle(dir, "bmany", ["sh", "-c", "read x; echo got-$x"]);
    const n = 40;
    const containers: Container[] = [];
    // The client side too uses raw fds: this test process would otherwise run out of blocking threads itself.
    const clients: { win: number; rout: number }[] = [];
    try {
      for (let i = 0; i < n; i++) {
        mkfifo(`${dir}/in${i}`, 0o600);
        mkfifo(`${dir}/out${i}`, 0o600);
        clients.push({
          win: openFifo(`${dir}/in${i}`, "readwrite"),
          rout: openFifo(`${dir}/out${i}`, "read"),
        });
        const c = await Container.create({
          id: `many${i}`,
          bundle: b,
          rootfs: [],
          stdio: { stdin: `${dir}/in${i}`, stdout: `${dir}/out${i}`, stderr: "", terminal: false },
          checkpoint: "",
        }, env);
        containers.push(c);
        await c.start("", () => {});
      }
      // Every container now waits on its stdin; the shim still has to serve all of them.
      const outs = clients.map(async ({ rout }) => {
        let text = "";
        const buf = new Uint8Array(256);
        for (;;) {
          const got = await readFd(rout, buf);
          if (got === 0) return text;
          text += new TextDecoder().decode(buf.subarray(0, got));
        }
      });
      for (let i = 0; i < n; i++) {
        await writeFd(clients[i].win, new TextEncoder().encode(`v${i}\n`));
        closeFd(clients[i].win);
        clients[i].win = -1;
        containers[i].process("").closeStdin();
      }
      for (let i = 0; i < n; i++) {
        assert.equal((await containers[i].init.exited).status, 0);
        await containers[i].delete("");
        assert.equal(await outs[i], `got-v${i}\n`);
      }
    } finally {
      for (const c of containers) {
        if (c.init.state !== "deleted") {
          await c.kill("", 9, true).catch(() => {});
          await c.init.exited;
          await c.delete("").catch(() => {});
        }
      }
      for (const cl of clients) {
        if (cl.win >= 0) closeFd(cl.win);
        closeFd(cl.rout);
      }
    }
    assert.deepEqual(zombieChildren(), []);
  });
});
