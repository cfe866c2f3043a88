/**
 * berth's shim under Debian's real containerd 1.6: containerd finds
 * `containerd-shim-berth-v2` on its PATH and runs containers through it with
 * `ctr run --runtime io.containerd.berth.v2`. One containerd serves every
 * step; after the last one nothing of the test may be left: no shim, runc or
 * container process, mount, fifo or socket.
 */

import assert from "node:assert/strict";
import { BerthError, Code } from "../src/errdefs/mod.ts";
import { spawn } from "../src/spawn/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../src/namespaces/mod.ts";
import { connect, serviceClient } from "../src/ttrpc/mod.ts";
import { Task } from "../src/gen/containerd/task/v2/shim_pb.ts";
import { type ContainerdInstance, startContainerd } from "./support/containerd.ts";
import { buildBusyboxImage, type TestImage } from "./support/image.ts";
import { mountsUnder } from "./support/mounts.ts";
import { findProcesses, isAlive, killNow } from "./support/proc.ts";
import { runTool } from "./support/tool.ts";

const RUNTIME = "io.containerd.berth.v2";
const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const DENO = Deno.execPath();
const BERTH_RUNC_ROOT = "/run/berth/runc";

/** A directory holding `containerd-shim-berth-v2`: a script running berth from this checkout. */
async function shimDir(dir: string): Promise<string> {
  const bin = `${dir}/bin`;
  await Deno.mkdir(bin);
  await Deno.writeTextFile(
    `${bin}/containerd-shim-berth-v2`,
    `#!/bin/sh\nexec "${DENO}" run -A --quiet --no-prompt --config "${REPO}/deno.json" "${REPO}/mod.ts" shim "$@"\n`,
    { mode: 0o755 },
  );
  return bin;
}

interface Env {
  ctd: ContainerdInstance;
  img: TestImage;
  sockDir: string;
  work: string;
}

/**
 * Shim processes of the test: serving ones and warm spares (whose argv
 * names only the socket directory, since a spare learns its containerd when
 * it is adopted).
 */
function shimPids(env: { sockDir: string }): number[] {
  return findProcesses((_pid, argv) =>
    argv.some((a) => a.includes(env.sockDir)) && argv.includes("shim")
  );
}

/** True for a spare shim nobody adopted yet (an adopted one works in its bundle directory). */
function isUnadoptedSpare(pid: number): boolean {
  try {
    const argv = Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").filter((a) => a);
    return argv[argv.length - 1] === "spare" && Deno.readLinkSync(`/proc/${pid}/cwd`) === "/";
  } catch {
    return false;
  }
}

/** The pid of the idle spare shim waiting in the socket directory, if any. */
function idleSparePid(env: { sockDir: string }): number | undefined {
  if (!safeReadDir(env.sockDir).includes("spare")) return undefined;
  const spares = findProcesses((pid, argv) =>
    argv.includes(`${env.sockDir}/spare`) && isUnadoptedSpare(pid)
  );
  return spares.length === 1 ? spares[0] : undefined;
}

/** The pid of the shim serving container `id` (its Connect answer). */
async function shimOf(env: Env, id: string): Promise<number> {
  const address = (await Deno.readTextFile(`${bundleOf(env, id)}/address`)).replace(
    /^unix:\/\//,
    "",
  );
  const client = await connect(address);
  try {
    const task = serviceClient(client, Task, {
      defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: env.ctd.namespace } },
    });
    return (await task.connect({ id })).shimPid;
  } finally {
    client.close();
    await client.done;
  }
}

async function waitFor(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 15_000,
  detail: () => string = () => "",
): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} ${detail()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function ctrOk(env: Env, args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await env.ctd.ctr(args, { timeoutMs });
  if (r.code !== 0) {
    throw new Error(`ctr ${args.join(" ")} failed (${r.code}): ${r.stderr}${r.stdout}`);
  }
  return r.stdout;
}

function bundleOf(env: Env, id: string): string {
  return `${env.ctd.state}/io.containerd.runtime.v2.task/${env.ctd.namespace}/${id}`;
}

/** Asserts that nothing of the test is left: shims, runc/container processes, mounts, sockets, fifos. */
async function assertNothingLeft(env: Env): Promise<void> {
  // 30 s: a spare that lost its socket to a racing start exits on its own after ~20 s.
  await waitFor(
    "shims and spares to exit",
    () => shimPids(env).length === 0,
    30_000,
    () =>
      shimPids(env).map((pid) => {
        let cwd = "?";
        try {
          cwd = Deno.readLinkSync(`/proc/${pid}/cwd`);
        } catch { /* gone */ }
        return `${pid} cwd=${cwd} ${
          Deno.readTextFileSync(`/proc/${pid}/cmdline`).split("\0").slice(-4).join(" ")
        }`;
      }).join("; ") + ` dir: ${safeReadDir(env.sockDir).join(" ")}`,
  );
  const runcLeft = findProcesses((_pid, argv) =>
    argv.some((a) => a.includes(`${BERTH_RUNC_ROOT}/${env.ctd.namespace}`))
  );
  assert.deepEqual(runcLeft, [], "runc processes left");
  const containers = [...safeReadDir(`${BERTH_RUNC_ROOT}/${env.ctd.namespace}`)];
  assert.deepEqual(containers, [], "runc state left");
  assert.deepEqual(mountsUnder(env.ctd.dir), [], "mounts left");
  // The spare's lock file stays with its directory by design (src/shim/spare.ts).
  const leftInSockDir = () => safeReadDir(env.sockDir).filter((n) => n !== "spare.lock");
  await waitFor(
    "the socket directory to empty",
    () => leftInSockDir().length === 0,
    5_000,
    () => leftInSockDir().join(" "),
  );
  const tasks = `${env.ctd.state}/io.containerd.runtime.v2.task/${env.ctd.namespace}`;
  assert.deepEqual([...safeReadDir(tasks)], [], "task bundles left");
  const fifos = [...safeReadDir(`${env.ctd.dir}/fifo`)];
  assert.deepEqual(fifos, [], "fifos left");
}

function safeReadDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name);
  } catch {
    return [];
  }
}

/** Removes the runc state of berth's runtime root for this namespace (after a failure, or the empty dir). */
async function cleanRuncRoot(ns: string): Promise<void> {
  const root = `${BERTH_RUNC_ROOT}/${ns}`;
  for (const id of safeReadDir(root)) {
    await runTool("runc", ["--root", root, "delete", "--force", id], { timeoutMs: 20_000 });
  }
  await Deno.remove(root, { recursive: true }).catch(() => {});
}

Deno.test({
  name: "shim: Debian's containerd runs containers through containerd-shim-berth-v2",
  sanitizeOps: false, // containerd and shims outlive single steps by design
  sanitizeResources: false,
  fn: async (t) => {
    const work = await Deno.makeTempDir({ prefix: "berth-shimtest-" });
    const sockDir = `${work}/s`;
    await Deno.mkdir(sockDir, { mode: 0o700 });
    // containerd passes its environment to the shims it starts.
    Deno.env.set("BERTH_SHIM_SOCKET_DIR", sockDir);
    Deno.env.set("BERTH_SHIM_SPARE", "1"); // warm spares on: every step runs with them
    Deno.env.set("BERTH_SHIM_SPARE_LINGER_MS", "1000"); // spares go soon after the last shim: steps end clean
    const ctd = await startContainerd({ extraPath: [await shimDir(work)] });
    const env: Env = { ctd, img: await buildBusyboxImage(work), sockDir, work };
    let restarted: Deno.ChildProcess | null = null;
    // BERTH_SHIM_TEST_ONLY=<part of a step name>[|<another>] runs just the matching steps (while developing).
    const only = Deno.env.get("BERTH_SHIM_TEST_ONLY");
    const step = (name: string, fn: () => Promise<void>) =>
      t.step({
        name,
        ignore: only !== undefined && !only.split("|").some((o) => name.includes(o)),
        fn,
      });
    try {
      await ctrOk(env, ["images", "import", env.img.archive]);

      await step("run --rm: output and exit status come back", async () => {
        const r = await ctd.ctr([
          "run",
          "--rm",
          "--runtime",
          RUNTIME,
          env.img.ref,
          "c1",
          "sh",
          "-c",
          "echo hi; exit 3",
        ]);
        assert.equal(r.stdout, "hi\n", r.stderr);
        assert.equal(r.code, 3, r.stderr);
        // A process that exits at once: its exit is not lost, its last line not cut.
        const q = await ctd.ctr([
          "run",
          "--rm",
          "--runtime",
          RUNTIME,
          env.img.ref,
          "c1b",
          "sh",
          "-c",
          "printf last-line-no-newline",
        ]);
        assert.equal(q.stdout, "last-line-no-newline");
        assert.equal(q.code, 0, q.stderr);
        await assertNothingLeft(env);
      });

      await step("detached task: exec, ps, pause/resume, metrics, kill, delete, rm", async () => {
        await ctrOk(env, ["run", "-d", "--runtime", RUNTIME, env.img.ref, "c2", "sleep", "1000"]);
        const ex = await ctd.ctr([
          "tasks",
          "exec",
          "--exec-id",
          "e1",
          "c2",
          "sh",
          "-c",
          "echo from-exec; exit 4",
        ]);
        assert.equal(ex.stdout, "from-exec\n", ex.stderr);
        assert.equal(ex.code, 4);
        const ps = await ctrOk(env, ["tasks", "ps", "c2"]);
        assert.match(ps, /PID/);
        assert.equal(ps.trim().split("\n").length, 2, ps); // header + sleep
        await ctrOk(env, ["tasks", "pause", "c2"]);
        assert.match(await ctrOk(env, ["tasks", "ls"]), /c2\s+\d+\s+PAUSED/);
        await ctrOk(env, ["tasks", "resume", "c2"]);
        assert.match(await ctrOk(env, ["tasks", "ls"]), /c2\s+\d+\s+RUNNING/);
        const metrics = await ctrOk(env, ["tasks", "metrics", "c2"]);
        assert.match(metrics, /memory\.usage_in_bytes|memory\.usage/, metrics);
        assert.match(metrics, /pids\.current\s+1/, metrics);

        // The shim itself, through berth's ttrpc client: bad input gets the right codes.
        const address = (await Deno.readTextFile(`${bundleOf(env, "c2")}/address`)).replace(
          /^unix:\/\//,
          "",
        );
        const client = await connect(address);
        try {
          const task = serviceClient(client, Task, {
            defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: ctd.namespace } },
          });
          await assert.rejects(
            task.state({ id: "no-such" }),
            (e) => e instanceof BerthError && e.code === Code.NotFound,
          );
          await assert.rejects(
            task.start({ id: "c2" }),
            (e) => e instanceof BerthError && e.code === Code.FailedPrecondition,
          );
          await assert.rejects(
            task.delete({ id: "c2" }),
            (e) => e instanceof BerthError && e.code === Code.FailedPrecondition,
          );
          const spec = {
            typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/Process",
            value: new TextEncoder().encode('{"args":["true"],"cwd":"/"}'),
          };
          await task.exec({ id: "c2", execId: "dup", spec });
          await assert.rejects(
            task.exec({ id: "c2", execId: "dup", spec }),
            (e) => e instanceof BerthError && e.code === Code.AlreadyExists,
          );
          await task.delete({ id: "c2", execId: "dup" });
          await assert.rejects(
            task.state({ id: "c2", execId: "dup" }),
            (e) => e instanceof BerthError && e.code === Code.NotFound,
          );
          const st = await task.state({ id: "c2" });
          assert.equal(st.pid > 0, true);
          const conn = await task.connect({ id: "c2" });
          assert.equal(conn.taskPid, st.pid);
        } finally {
          client.close();
          await client.done;
        }

        // SIGUSR1: the shim writes its state to its log, which containerd copies into its own.
        Deno.kill(await shimOf(env, "c2"), "SIGUSR1");
        await waitFor("the state dump in containerd's log", async () => {
          const text = await Deno.readTextFile(ctd.logPath);
          return text.includes("shim state dump") && /container c2 bundle=/.test(text);
        });
        await ctrOk(env, ["tasks", "kill", "-s", "SIGKILL", "c2"]);
        await waitFor(
          "c2 to stop",
          async () => /c2\s+\d+\s+STOPPED/.test(await ctrOk(env, ["tasks", "ls"])),
        );
        await ctrOk(env, ["tasks", "delete", "c2"]);
        await ctrOk(env, ["containers", "rm", "c2"]);
        await assertNothingLeft(env);
      });

      await step("stdin: input reaches the container and its end arrives (CloseIO)", async () => {
        const child = spawn("ctr", [
          "--address",
          ctd.address,
          "--namespace",
          ctd.namespace,
          "run",
          "--rm",
          "--fifo-dir",
          `${ctd.dir}/fifo`,
          "--runtime",
          RUNTIME,
          env.img.ref,
          "c5",
          "sh",
          "-c",
          "wc -c; echo end-of-input-seen",
        ], { stdin: "piped", stdout: "piped", stderr: "piped", env: { PATH: ctd.path } });
        const out = new Response(child.stdout).text();
        const err = new Response(child.stderr).text();
        const w = child.stdin.getWriter();
        await w.write(new Uint8Array(300_000).fill(120));
        await w.close();
        const status = await child.status;
        assert.equal(
          (await out).replace(/\s+/g, " ").trim(),
          "300000 end-of-input-seen",
          await err,
        );
        assert.equal(status.code, 0);
        await assertNothingLeft(env);
      });

      await step("terminal: input echoes, ResizePty reaches the container", async () => {
        const go = `${work}/resize-now`;
        // script(1) gives ctr a terminal. Its shell sets a size, starts ctr -t,
        // then (when told) changes the size: the kernel sends SIGWINCH and ctr
        // calls ResizePty. The container reads lines with the tty in
        // canonical mode, so the tty itself echoes what is typed.
        const program = "read line; echo got-$line; stty size; read x; stty size; exit 7";
        const inner = [
          "stty rows 30 cols 100",
          `ctr --address ${ctd.address} --namespace ${ctd.namespace} run -t --rm --fifo-dir ${ctd.dir}/fifo --runtime ${RUNTIME} ${env.img.ref} c3 sh -c '${program}' 0<>/dev/tty 1>&0 2>&0 &`,
          `while [ ! -e ${go} ]; do sleep 0.05; done`,
          "stty rows 40 cols 120",
          "wait $!",
        ].join("\n");
        const child = spawn("script", ["-qfec", inner, "/dev/null"], {
          stdin: "piped",
          stdout: "piped",
          stderr: "piped",
          env: { PATH: ctd.path, TERM: "dumb" },
        });
        const writer = child.stdin.getWriter();
        let out = "";
        const reading = (async () => {
          const dec = new TextDecoder();
          for await (const chunk of child.stdout) out += dec.decode(chunk, { stream: true });
        })();
        const errText = new Response(child.stderr).text();
        const send = (s: string) => writer.write(new TextEncoder().encode(s));
        try {
          await waitFor(
            "c3 to run",
            async () => /c3\s+\d+\s+RUNNING/.test((await ctd.ctr(["tasks", "ls"])).stdout),
            30_000,
            () => JSON.stringify(out),
          );
          await send("hello-tty\r");
          await waitFor(
            "echoed input and the program's answer",
            () => out.includes("hello-tty") && out.includes("got-hello-tty"),
            30_000,
            () => JSON.stringify(out),
          );
          await waitFor(
            "the first size",
            () => out.includes("30 100"),
            15_000,
            () => JSON.stringify(out),
          );
          await Deno.writeTextFile(go, "");
          // Wait until the shell around ctr has resized, then let the container look again.
          await new Promise((r) => setTimeout(r, 500));
          await send("\r");
          await waitFor(
            "the new size",
            () => out.includes("40 120"),
            15_000,
            () => JSON.stringify(out),
          );
          const status = await child.status;
          assert.equal(status.code, 7, out);
        } finally {
          await writer.close().catch(() => {});
          if (isAlive(child.pid)) child.kill("SIGKILL");
          await child.status;
          await reading;
          await errText;
          await Deno.remove(go).catch(() => {});
        }
        await assertNothingLeft(env);
      });

      await step("100 MB of output arrive byte-exact", async () => {
        const n = 12_500_000;
        const r = await ctd.ctr([
          "run",
          "--rm",
          "--runtime",
          RUNTIME,
          env.img.ref,
          "c4",
          "seq",
          "1",
          String(n),
        ], {
          timeoutMs: 120_000,
        });
        assert.equal(r.code, 0, r.stderr);
        const parts: string[] = [];
        for (let i = 1; i <= n; i++) parts.push(String(i));
        const expected = parts.join("\n") + "\n";
        assert.ok(expected.length > 100_000_000);
        assert.equal(r.stdout.length, expected.length);
        assert.ok(r.stdout === expected, "output differs");
        await assertNothingLeft(env);
      });

      await step("20 containers at once, 10 in one group share one shim", async () => {
        const ids = Array.from({ length: 20 }, (_, i) => `m${i}`);
        await Promise.all(ids.map((id, i) =>
          ctrOk(env, [
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            ...(i < 10 ? ["--annotation", "io.containerd.runc.v2.group=g1"] : []),
            env.img.ref,
            id,
            "sleep",
            "1000",
          ], 120_000)
        ));
        try {
          const listed = await ctrOk(env, ["tasks", "ls"]);
          for (const id of ids) assert.match(listed, new RegExp(`${id}\\s+\\d+\\s+RUNNING`));
          const grouped = new Set(
            ids.slice(0, 10).map((id) => Deno.readTextFileSync(`${bundleOf(env, id)}/address`)),
          );
          assert.equal(grouped.size, 1, "one socket for the group");
          const serving = new Set(await Promise.all(ids.map((id) => shimOf(env, id))));
          assert.equal(
            serving.size,
            11,
            "one shim process for the group and one per other container",
          );
          // Besides them only spares that serve nobody yet (one waiting, maybe one starting and about to give way).
          const others = shimPids(env).filter((pid) => !serving.has(pid));
          assert.ok(
            others.every((pid) => isUnadoptedSpare(pid)),
            `no other shim process: ${others.join(" ")}`,
          );
          assert.ok(others.length <= 2, `spares: ${others.join(" ")}`);
        } finally {
          await Promise.all(ids.map(async (id) => {
            await ctrOk(env, ["tasks", "kill", "-s", "SIGKILL", id]);
            await waitFor(
              `${id} to stop`,
              async () => (await ctd.ctr(["tasks", "delete", id])).code === 0,
              30_000,
            );
            await ctrOk(env, ["containers", "rm", id]);
          }));
        }
        await assertNothingLeft(env);
      });

      await step(
        "a group of 3 in one shim: each deleted in turn, the shim exits last",
        async () => {
          // The shim starts in the first container's bundle, which containerd
          // removes once that container is deleted; the others must still work.
          const ids = ["gd0", "gd1", "gd2"];
          for (const id of ids) {
            const group = ["--annotation", "io.containerd.runc.v2.group=gd"];
            await ctrOk(env, [
              "run",
              "-d",
              "--runtime",
              RUNTIME,
              ...group,
              env.img.ref,
              id,
              "sleep",
              "1000",
            ]);
          }
          const listed = () => ctrOk(env, ["tasks", "ls"]);
          const inits = (await listed()).split("\n").map((l) => l.trim().split(/\s+/))
            .filter(([id]) => ids.includes(id))
            .sort(([a], [b]) => a.localeCompare(b))
            .map(([, pid]) => Number(pid));
          assert.equal(inits.length, 3);
          const shim = await shimOf(env, ids[0]);
          for (const id of ids) {
            assert.equal(await shimOf(env, id), shim, `${id} shares the group's shim`);
          }
          const bundles = ids.map((id) => bundleOf(env, id));
          // Deleted means: no task, its init reaped, nothing mounted under its bundle, no runc state.
          const assertGone = async (i: number) => {
            assert.doesNotMatch(await listed(), new RegExp(`^${ids[i]}\\s`, "m"));
            await waitFor(`${ids[i]}'s init to be reaped`, () => !isAlive(inits[i]));
            assert.deepEqual(mountsUnder(bundles[i]), [], `mounts left under ${ids[i]}'s bundle`);
            const runcState = safeReadDir(`${BERTH_RUNC_ROOT}/${ctd.namespace}`);
            assert.ok(!runcState.includes(ids[i]), `runc state of ${ids[i]} left`);
          };
          const assertServing = async (left: string[]) => {
            assert.ok(isAlive(shim), "the group's shim still runs");
            for (const id of left) {
              assert.equal(await shimOf(env, id), shim);
              assert.match(await listed(), new RegExp(`^${id}\\s+\\d+\\s+RUNNING`, "m"));
            }
            // runc still starts for them, also once the shim's first bundle is gone.
            assert.match(await ctrOk(env, ["tasks", "ps", left[0]]), /PID/);
          };
          // containerd calls Shutdown after every Delete: a shim that holds containers stays.
          const askShutdown = async () => {
            const address = (await Deno.readTextFile(`${bundles[2]}/address`))
              .replace(/^unix:\/\//, "");
            const client = await connect(address);
            try {
              const metadata = { [TTRPC_NAMESPACE_KEY]: ctd.namespace };
              const task = serviceClient(client, Task, { defaults: { metadata } });
              await task.shutdown({ id: ids[2] });
            } finally {
              client.close();
              await client.done;
            }
          };
          const killAndDelete = async (id: string) => {
            await ctrOk(env, ["tasks", "kill", "-s", "SIGKILL", id]);
            const stopped = new RegExp(`^${id}\\s+\\d+\\s+STOPPED`, "m");
            await waitFor(`${id} to stop`, async () => stopped.test(await listed()));
            await ctrOk(env, ["tasks", "delete", id], 30_000);
          };
          try {
            await askShutdown();
            await assertServing(ids);

            await killAndDelete(ids[0]);
            await assertGone(0);
            await assertServing(ids.slice(1));
            await askShutdown();
            await assertServing(ids.slice(1));

            // A running one: delete -f kills all its processes, waits for the exit, deletes.
            await ctrOk(env, ["tasks", "delete", "-f", ids[1]], 30_000);
            await assertGone(1);
            await assertServing(ids.slice(2));

            await killAndDelete(ids[2]);
            await assertGone(2);
            await waitFor("the group's shim to exit", () => !isAlive(shim));
          } finally {
            for (const id of ids) {
              await ctd.ctr(["tasks", "delete", "-f", id], { timeoutMs: 30_000 });
            }
            await ctd.ctr(["containers", "rm", ...ids]);
          }
          await assertNothingLeft(env);
        },
      );

      await step(
        "containerd SIGKILLed and restarted: tasks still run and can be ended",
        async () => {
          await ctrOk(env, ["run", "-d", "--runtime", RUNTIME, env.img.ref, "r1", "sleep", "1000"]);
          await ctrOk(env, [
            "run",
            "-d",
            "--runtime",
            RUNTIME,
            "--annotation",
            "io.containerd.runc.v2.group=g2",
            env.img.ref,
            "r2",
            "sleep",
            "1000",
          ]);
          await killNow([ctd.pid]);
          restarted = spawn("/bin/sh", [
            "-c",
            'exec "$0" --config "$1" >>"$2" 2>&1',
            "/usr/bin/containerd",
            `${ctd.dir}/config.toml`,
            ctd.logPath,
          ], {
            stdin: "null",
            stdout: "null",
            stderr: "null",
            env: { PATH: ctd.path },
          });
          await waitFor(
            "containerd to answer again",
            async () => (await ctd.ctr(["version"])).code === 0,
            30_000,
          );
          const listed = await ctrOk(env, ["tasks", "ls"]);
          assert.match(listed, /r1\s+\d+\s+RUNNING/);
          assert.match(listed, /r2\s+\d+\s+RUNNING/);
          for (const id of ["r1", "r2"]) {
            await ctrOk(env, ["tasks", "kill", "-s", "SIGKILL", id]);
            await waitFor(
              `${id} to stop`,
              async () => (await ctd.ctr(["tasks", "delete", id])).code === 0,
              30_000,
            );
            await ctrOk(env, ["containers", "rm", id]);
          }
          await assertNothingLeft(env);
        },
      );

      await step("OOM kill: TaskOOM is published before the task's exit", async () => {
        const events = spawn("ctr", [
          "--address",
          ctd.address,
          "--namespace",
          ctd.namespace,
          "events",
        ], {
          stdout: "piped",
          stderr: "null",
          env: { PATH: ctd.path },
        });
        let seen = "";
        const reading = (async () => {
          const dec = new TextDecoder();
          for await (const chunk of events.stdout) seen += dec.decode(chunk, { stream: true });
        })();
        try {
          await new Promise((r) => setTimeout(r, 300)); // let the subscription start
          const r = await ctd.ctr([
            "run",
            "--rm",
            "--runtime",
            RUNTIME,
            "--memory-limit",
            String(16 << 20),
            env.img.ref,
            "oom1",
            "sh",
            "-c",
            "x=aaaaaaaaaaaaaaaa; while true; do x=$x$x; done",
          ]);
          assert.equal(r.code, 137, r.stderr);
          await waitFor(
            "the exit event",
            () => /\/tasks\/delete .*oom1/.test(seen),
            15_000,
            () => seen,
          );
          const oom = seen.search(/\/tasks\/oom .*oom1/);
          const exit = seen.search(/\/tasks\/exit .*oom1/);
          assert.ok(oom >= 0 && exit > oom, seen);
        } finally {
          events.kill("SIGTERM");
          await events.status;
          await reading;
        }
        await assertNothingLeft(env);
      });

      await step("a warm spare shim is adopted by the next start", async () => {
        await ctrOk(env, ["run", "-d", "--runtime", RUNTIME, env.img.ref, "w1", "sleep", "1000"]);
        let spare: number | undefined;
        await waitFor("a spare to wait", () => (spare = idleSparePid(env)) !== undefined, 20_000);
        await ctrOk(env, ["run", "-d", "--runtime", RUNTIME, env.img.ref, "w2", "sleep", "1000"]);
        assert.equal(await shimOf(env, "w2"), spare, "w2 is served by the spare that was waiting");
        assert.notEqual(await shimOf(env, "w1"), spare);
        for (const id of ["w1", "w2"]) {
          await ctrOk(env, ["tasks", "kill", "-s", "SIGKILL", id]);
          await waitFor(
            `${id} to stop`,
            async () => (await ctd.ctr(["tasks", "delete", id])).code === 0,
            30_000,
          );
          await ctrOk(env, ["containers", "rm", id]);
        }
        await assertNothingLeft(env);
      });

      await step("a broken bundle: runc's own message, nothing left behind", async () => {
        const r = await ctd.ctr([
          "run",
          "--rm",
          "--runtime",
          RUNTIME,
          env.img.ref,
          "c7",
          "/no/such/binary",
        ]);
        assert.notEqual(r.code, 0);
        assert.match(r.stderr, /OCI runtime create failed: .*no such file or directory/, r.stderr);
        await ctd.ctr(["containers", "rm", "c7"]);
        await assertNothingLeft(env);
      });
    } finally {
      if (restarted) {
        const child: Deno.ChildProcess = restarted;
        try {
          child.kill("SIGTERM");
        } catch { /* gone */ }
        await child.status;
      }
      await ctd.stop();
      // Shims that containerd's cleanup cannot recognise (adopted spares name only the socket dir).
      const left = shimPids({ sockDir });
      if (left.length > 0) await killNow(left);
      await cleanRuncRoot(ctd.namespace);
      Deno.env.delete("BERTH_SHIM_SOCKET_DIR");
      Deno.env.delete("BERTH_SHIM_SPARE_LINGER_MS");
      Deno.env.delete("BERTH_SHIM_SPARE");
      await Deno.remove(work, { recursive: true }).catch(() => {});
    }
  },
});
