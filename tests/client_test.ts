/**
 * The client as people use it: the built bin/berth against a real `berth
 * daemon` on temporary paths. Every implemented command at least once,
 * output shapes, exit statuses, and the error messages; then the same small
 * session with Debian's ctr against containerd, compared in shape.
 *
 * Needs `make build` first (bin/berth).
 */
import assert from "node:assert/strict";
import { spawn } from "../src/spawn/mod.ts";
import { startContainerd } from "./support/containerd.ts";
import { spawnDaemon, stopDaemon, waitForSocket } from "./support/daemon.ts";
import { removeIfEmpty } from "./support/mounts.ts";
import { startRegistry } from "./support/registry.ts";
import { runTool, type ToolResult } from "./support/tool.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const BUILT = `${ROOT}bin/berth`;

/**
 * The tests run a private copy of bin/berth, so a rebuild of the shared
 * tree while they run cannot pull the executable from under them.
 */
async function privateCopy(): Promise<{ path: string; dir: string }> {
  await Deno.stat(BUILT).catch(() => {
    throw new Error(`${BUILT} is missing: run \`make build\` first`);
  });
  const dir = await Deno.makeTempDir({ prefix: "berth-client-bin-" });
  await Deno.copyFile(BUILT, `${dir}/berth`);
  await Deno.chmod(`${dir}/berth`, 0o755);
  // The daemon finds berth's shim beside its own executable.
  await Deno.symlink("berth", `${dir}/containerd-shim-berth-v2`);
  return { path: `${dir}/berth`, dir };
}
const copy = await privateCopy();
const BERTH = copy.path;
globalThis.addEventListener("unload", () => Deno.removeSync(copy.dir, { recursive: true }));

/** A berth daemon started by the test on its own temporary paths. */
interface Daemon {
  dir: string;
  address: string;
  berth(
    args: string[],
    opts?: { env?: Record<string, string>; timeoutMs?: number },
  ): Promise<ToolResult>;
  stop(): Promise<void>;
}

async function startDaemon(): Promise<Daemon> {
  const dir = await Deno.makeTempDir({ prefix: "berth-client-test-" });
  const address = `${dir}/berth.sock`;
  const d = spawnDaemon(
    ["--root", `${dir}/root`, "--state", `${dir}/state`, "--address", address],
    BERTH,
  );
  await waitForSocket(`${address}.ttrpc`, d);
  return {
    dir,
    address,
    berth: (args, opts = {}) =>
      runTool(BERTH, ["--address", address, ...args], {
        env: opts.env,
        timeoutMs: opts.timeoutMs ?? 60_000,
      }),
    async stop() {
      await stopDaemon(d);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

function ok(r: ToolResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

function header(out: string): string[] {
  return out.split("\n")[0].trim().split(/\s{2,}|\t+| (?=[A-Z])/).map((s) => s.trim()).filter((s) =>
    s
  );
}

async function makeRootDir(dir: string): Promise<string> {
  const root = `${dir}/imgroot`;
  await Deno.mkdir(`${root}/bin`, { recursive: true });
  await Deno.copyFile("/bin/busybox", `${root}/bin/busybox`);
  for (const a of ["sh", "echo", "cat", "ls", "sleep", "stty", "true"]) {
    await Deno.symlink("busybox", `${root}/bin/${a}`);
  }
  return root;
}

Deno.test("client: errors a person can act on, with distinct exit statuses", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-client-err-" });
  try {
    // Daemon not running, default address: the exact message of the issue.
    const r = await runTool(BERTH, ["version"], { env: { BERTH_ADDRESS: "" } });
    assert.equal(r.code, 8, r.stderr);
    assert.match(
      r.stderr,
      /cannot connect to berth daemon at \/run\/berth\/berth\.sock\.ttrpc: is it running\? start it with: berth daemon\n/,
    );
    assert.doesNotMatch(r.stderr, / {4}at /, "no stack trace without --debug");
    // Elsewhere: the start command names the address.
    const r2 = await runTool(BERTH, ["-a", `${dir}/none.sock`, "namespaces", "ls"]);
    assert.equal(r2.code, 8);
    assert.match(
      r2.stderr,
      new RegExp(
        `at ${dir}/none\\.sock\\.ttrpc: is it running\\? start it with: berth daemon --address ${dir}/none\\.sock`,
      ),
    );
    // --debug adds the code and a stack.
    const r3 = await runTool(BERTH, ["--debug", "-a", `${dir}/none.sock`, "version"]);
    assert.match(r3.stderr, /code Unavailable, exit status 8/);
    assert.match(r3.stderr, / {4}at /);
    // Usage errors: exit 2, naming the command.
    const r4 = await runTool(BERTH, ["frobnicate"]);
    assert.equal(r4.code, 2);
    assert.match(r4.stderr, /unknown command "frobnicate"/);
    const r5 = await runTool(BERTH, ["namespaces", "ls", "--bogus"]);
    assert.equal(r5.code, 2);
    assert.match(r5.stderr, /berth namespaces list: Unknown option '--bogus'/);
    // Help at every level.
    assert.match(
      ok(await runTool(BERTH, ["--help"]), "help"),
      /COMMANDS:[\s\S]*namespaces, namespace, ns/,
    );
    assert.match(ok(await runTool(BERTH, ["tasks", "--help"]), "tasks help"), /exec[\s\S]*kill/);
    assert.match(
      ok(await runTool(BERTH, ["tasks", "kill", "--help"]), "kill help"),
      /--signal value/,
    );
    // Bash completion is valid bash and knows subcommands and flags.
    const script = ok(await runTool(BERTH, ["completion", "bash"]), "completion");
    await Deno.writeTextFile(`${dir}/c.sh`, script);
    const probe = await runTool("bash", [
      "-c",
      `source ${dir}/c.sh; COMP_WORDS=(berth tasks kill -); COMP_CWORD=3; _berth; echo "\${COMPREPLY[@]}"`,
    ]);
    assert.match(probe.stdout, /--signal -s --exec-id --all -a/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("client: every command against a real berth daemon", async () => {
  const d = await startDaemon();
  // A namespace of its own: runc keeps state per namespace under /run/containerd/runc.
  const N1 = `c${crypto.randomUUID().slice(0, 8)}`;
  try {
    const b = d.berth;
    // version, plugins
    const v = ok(await b(["version"]), "version");
    assert.match(
      v,
      /^Client:\n {2}Version: {2}\S+\n[\s\S]*\nServer:\n {2}Version: {2}\S+\n {2}Revision: .*\n {2}UUID: [0-9a-f-]{36}\n$/,
    );
    assert.equal(
      JSON.parse(ok(await b(["version", "--format", "json"]), "version json")).server.uuid.length,
      36,
    );
    const plugins = ok(await b(["plugins", "ls"]), "plugins");
    assert.deepEqual(header(plugins), ["TYPE", "ID", "PLATFORMS", "STATUS"]);
    assert.match(plugins, /io\.containerd\.grpc\.v1\s+namespaces\s+-\s+ok/);
    assert.ok(
      ok(await b(["plugins", "ls", "-q"]), "plugins -q").split("\n").includes("namespaces"),
    );

    // namespaces
    ok(await b(["namespaces", "create", N1, "a=b"]), "ns create");
    ok(await b(["ns", "label", N1, "a=", "c=d"]), "ns label");
    assert.match(
      ok(await b(["ns", "ls"]), "ns ls"),
      new RegExp(`^NAME {6}LABELS \n${N1} c=d {4}\n$`),
    );
    assert.equal(ok(await b(["ns", "ls", "-q"]), "ns ls -q"), `${N1}\n`);
    assert.deepEqual(JSON.parse(ok(await b(["ns", "ls", "--format", "json"]), "ns json")), [{
      name: N1,
      labels: { c: "d" },
    }]);
    const nsMissing = await b(["ns", "label", "nope", "x=y"]);
    assert.equal(nsMissing.code, 3);
    assert.match(
      nsMissing.stderr,
      /namespace "nope": not found\nlist namespaces with: berth namespaces ls/,
    );

    // images: import a directory, list, check, tag, export, import the archive elsewhere, rm
    const rootDir = await makeRootDir(d.dir);
    const imp = ok(
      await b([
        "-n",
        N1,
        "images",
        "import",
        "--from-dir",
        rootDir,
        "bb:1",
        "--cmd",
        "sh",
        "--cmd=-c",
        "--cmd",
        "echo hello",
      ]),
      "import --from-dir",
    );
    assert.match(imp, /^docker\.io\/library\/bb:1 sha256:[0-9a-f]{64} unpacked \(overlayfs\)\n$/);
    // Again, from the same directory: its layer blob is in the store already, which is no error.
    const again = ok(
      await b(["-n", N1, "images", "import", "--from-dir", rootDir, "bb:0", "--cmd", "true"]),
      "import --from-dir again",
    );
    assert.match(again, /^docker\.io\/library\/bb:0 sha256:[0-9a-f]{64} unpacked \(overlayfs\)\n$/);
    ok(await b(["-n", N1, "images", "rm", "docker.io/library/bb:0"]), "rm bb:0");
    const ils = ok(await b(["-n", N1, "images", "ls"]), "images ls");
    assert.deepEqual(header(ils), ["REF", "TYPE", "DIGEST", "SIZE", "PLATFORMS", "LABELS"]);
    assert.match(
      ils,
      /docker\.io\/library\/bb:1 application\/vnd\.oci\.image\.index\.v1\+json sha256:\S+ \d+(\.\d+)? [KM]iB linux\/amd64 -/,
    );
    assert.match(
      ok(await b(["-n", N1, "images", "check"]), "check"),
      /complete \(4\/4\) \S+ \S+\/\S+ \S+ true\n$/,
    );
    assert.equal(
      ok(
        await b(["-n", N1, "images", "tag", "docker.io/library/bb:1", "docker.io/library/bb:2"]),
        "tag",
      ),
      "docker.io/library/bb:2\n",
    );
    assert.equal(
      (await b(["-n", N1, "images", "tag", "docker.io/library/bb:1", "docker.io/library/bb:2"]))
        .code,
      4,
    );
    ok(
      await b(["-n", N1, "images", "export", `${d.dir}/bb.tar`, "docker.io/library/bb:1"]),
      "export",
    );
    ok(await b(["ns", "create", "n2"]), "ns create n2");
    const impTar = ok(await b(["-n", "n2", "images", "import", `${d.dir}/bb.tar`]), "import tar");
    assert.match(impTar, /unpacking docker\.io\/library\/bb:1 \(sha256:\S+\)\.\.\.done/);
    // Not a terminal: progress as plain lines (a quarter each), ending at the whole size.
    assert.match(impTar, /^importing \S+\/bb\.tar \|\+{30}\| (\S+ \S+)\/\1 \S+ \S+\/s$/m);
    assert.equal(
      ok(await b(["-n", "n2", "images", "ls", "-q"]), "ls -q n2"),
      "docker.io/library/bb:1\n",
    );
    const noImage = await b(["-n", "n2", "images", "tag", "nope:1", "x:1"]);
    assert.equal(noImage.code, 3);
    assert.match(noImage.stderr, /image "nope:1": not found\nlist images with: berth images ls/);

    // containers
    ok(
      await b([
        "-n",
        N1,
        "containers",
        "create",
        "--label",
        "k=v",
        "--env",
        "X=1",
        "docker.io/library/bb:1",
        "c1",
      ]),
      "c create",
    );
    const cls = ok(await b(["-n", N1, "c", "ls"]), "c ls");
    // berth's default runtime is its own shim (ctr's would be io.containerd.runc.v2).
    assert.equal(
      cls,
      "CONTAINER    IMAGE                     RUNTIME                   \nc1           docker.io/library/bb:1    io.containerd.berth.v2    \n",
    );
    assert.equal(ok(await b(["-n", N1, "c", "label", "c1", "z=9"]), "c label"), "k=v,z=9\n");
    const info = JSON.parse(ok(await b(["-n", N1, "c", "info", "c1"]), "c info"));
    assert.equal(info.ID, "c1");
    assert.equal(info.SnapshotKey, "c1");
    assert.deepEqual(info.Spec.process.args, ["sh", "-c", "echo hello"]);
    assert.ok(info.Spec.process.env.includes("X=1"));
    assert.equal(
      JSON.parse(ok(await b(["-n", N1, "c", "info", "--spec", "c1"]), "c info --spec")).linux
        .cgroupsPath,
      `/${N1}/c1`,
    );
    const dup = await b(["-n", N1, "c", "create", "docker.io/library/bb:1", "c1"]);
    assert.equal(dup.code, 4);
    assert.match(
      dup.stderr,
      /container "c1" already exists\nremove it with: berth containers rm c1/,
    );
    const unknown = await b(["-n", N1, "c", "info", "ghost"]);
    assert.equal(unknown.code, 3);
    assert.match(
      unknown.stderr,
      new RegExp(
        `^berth: container "ghost": not found\nlist containers with: berth -n ${N1} containers ls\n$`,
      ),
    );

    // snapshots (the container's active snapshot on the image's chain)
    const sls = ok(await b(["-n", N1, "snapshots", "ls"]), "snapshots ls");
    assert.deepEqual(header(sls), ["KEY", "PARENT", "KIND"]);
    assert.match(sls, /\nc1 +sha256:\S+ Active/);
    assert.match(
      ok(await b(["-n", N1, "snapshots", "--snapshotter", "overlayfs", "tree"]), "tree"),
      /^ sha256:\S+\n {2}\\_ c1\n$/,
    );
    assert.equal(
      JSON.parse(ok(await b(["-n", N1, "snapshots", "info", "c1"]), "info")).Kind,
      "Active",
    );
    assert.match(
      ok(await b(["-n", N1, "snapshots", "usage", "c1"]), "usage"),
      /^KEY SIZE +INODES \nc1 +\S+ \S+ +\d+ +\n$/,
    );
    assert.match(
      ok(await b(["-n", N1, "snapshots", "mounts", "/mnt/x", "c1"]), "mounts"),
      /^mount -t \S+ \S+ \/mnt\/x -o \S+\n$/,
    );
    // Snapshots nothing refers to are the GC's: these carry containerd's gc.root label.
    const root = "containerd.io/gc.root=test";
    ok(await b(["-n", N1, "snapshots", "prepare", "--label", root, "s1"]), "prepare");
    ok(await b(["-n", N1, "snapshots", "commit", "--label", root, "s1c", "s1"]), "commit");
    assert.match(
      ok(
        await b([
          "-n",
          N1,
          "snapshots",
          "view",
          "--label",
          root,
          "--target",
          "/mnt/v",
          "v1",
          "s1c",
        ]),
        "view",
      ),
      /\/mnt\/v/,
    );
    assert.equal(
      ok(await b(["-n", N1, "snapshots", "label", "v1", "x=y"]), "label"),
      `${root},x=y\n`,
    );
    ok(await b(["-n", N1, "snapshots", "rm", "v1", "s1c"]), "snapshots rm");
    assert.equal((await b(["-n", N1, "snapshots", "rm", "v1"])).code, 3);

    // content
    const contentLs = ok(await b(["-n", N1, "content", "ls"]), "content ls");
    assert.match(contentLs.split("\n")[0], /^DIGEST\t{9}SIZE\t+AGE\t+LABELS$/);
    const digests = ok(await b(["-n", N1, "content", "ls", "-q"]), "content ls -q").trim().split(
      "\n",
    );
    assert.equal(digests.length, 4);
    const got = await runTool("sh", [
      "-c",
      `"${BERTH}" -a ${d.address} -n ${N1} content get ${digests[0]} | sha256sum`,
    ]);
    assert.equal(got.stdout.split(" ")[0], digests[0].slice(7));
    assert.match(
      ok(await b(["-n", N1, "content", "label", digests[0], "mine=1"]), "content label"),
      /mine=1/,
    );

    // leases
    assert.equal(
      ok(await b(["-n", N1, "leases", "create", "--id", "l1", "who=test"]), "lease create"),
      "l1\n",
    );
    const lls = ok(await b(["-n", N1, "leases", "ls"]), "leases ls");
    assert.match(lls.split("\n")[0], /^ID +CREATED AT +LABELS +$/);
    assert.match(lls, /\nl1 +\d{4}-\d\d-\d\dT\S+ +containerd\.io\/gc\.expire=\S+,who=test/);
    assert.equal(ok(await b(["-n", N1, "leases", "rm", "l1"]), "lease rm"), "l1\n");

    // events: a stream that shows what happens, ended by Ctrl-C with status 0
    const events = spawn(BERTH, ["-a", d.address, "events"], {
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    });
    const evOut = new Response(events.stdout).text();
    const evErr = new Response(events.stderr).text();
    await new Promise((r) => setTimeout(r, 1500));
    ok(await b(["ns", "create", "n3"]), "ns create n3");
    await new Promise((r) => setTimeout(r, 500));
    events.kill("SIGINT");
    const evStatus = await events.status;
    assert.equal(evStatus.code, 0, await evErr);
    assert.match(
      await evOut,
      /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? \+0000 UTC default \/namespaces\/create \{"name":"n3"\}$/m,
    );

    // tasks and run: against the Tasks service when this daemon has one
    const tls = await b(["-n", N1, "tasks", "ls"]);
    if (tls.code === 7) {
      assert.match(tls.stderr, /this berth daemon does not run tasks \(no Tasks service\)/);
      const run = await b([
        "-n",
        N1,
        "run",
        "--rm",
        "docker.io/library/bb:1",
        "r1",
        "sh",
        "-c",
        "exit 3",
      ]);
      assert.equal(run.code, 7, run.stderr);
      // --rm still removed the container it made.
      assert.doesNotMatch(ok(await b(["-n", N1, "c", "ls", "-q"]), "c ls"), /r1/);
    } else {
      assert.deepEqual(header(ok(tls, "tasks ls")), ["TASK", "PID", "STATUS"]);
      const run = await b(["-n", N1, "run", "--rm", "docker.io/library/bb:1", "r1"], {
        timeoutMs: 60_000,
      });
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout, "hello\n");
      const exit3 = await b([
        "-n",
        N1,
        "run",
        "--rm",
        "docker.io/library/bb:1",
        "r2",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
      ]);
      assert.equal(exit3.code, 3, exit3.stderr);
      assert.equal(exit3.stdout, "out\n");
      assert.match(exit3.stderr, /err/);
      // run's flags reach the container: env file, cwd, user, read-only rootfs, bind mount, pid file, log uri
      await Deno.writeTextFile(`${d.dir}/env`, "FROM_FILE=yes\n# comment\n");
      await Deno.mkdir(`${d.dir}/share`);
      await Deno.writeTextFile(`${d.dir}/share/hello.txt`, "shared\n");
      const flagsRun = await b([
        "-n",
        N1,
        "run",
        "--rm",
        "--env-file",
        `${d.dir}/env`,
        "--env",
        "E2=two",
        "--cwd",
        "/bin",
        "--user",
        "1000:1000",
        "--read-only",
        "--mount",
        `type=bind,src=${d.dir}/share,dst=/share,options=rbind:ro`,
        "--pid-file",
        `${d.dir}/pid`,
        "docker.io/library/bb:1",
        "r4",
        "sh",
        "-c",
        "echo $FROM_FILE $E2; pwd; echo $(id -u):$(id -g); cat /share/hello.txt; touch /x 2>/dev/null || echo ro",
      ]);
      assert.equal(flagsRun.code, 0, flagsRun.stderr);
      assert.equal(flagsRun.stdout, "yes two\n/bin\n1000:1000\nshared\nro\n");
      assert.match(await Deno.readTextFile(`${d.dir}/pid`), /^\d+$/);
      // --privileged grants what this host can (our bounding set); --net-host keeps the host's network.
      const ownMask = /^CapBnd:\s*(\S+)$/m.exec(await Deno.readTextFile("/proc/self/status"))![1];
      const priv = await b([
        "-n",
        N1,
        "run",
        "--rm",
        "--privileged",
        "--net-host",
        "--hostname",
        "hh",
        "docker.io/library/bb:1",
        "rp",
        "sh",
        "-c",
        "hostname; grep CapBnd /proc/self/status; ls /sys/class/net | grep -c .",
      ]);
      assert.equal(priv.code, 0, priv.stderr);
      const [hostname, capLine, nics] = priv.stdout.trim().split("\n");
      assert.equal(hostname, "hh");
      assert.equal(capLine.split(/\s+/)[1], ownMask);
      assert.equal(Number(nics), [...Deno.readDirSync("/sys/class/net")].length);
      ok(
        await b([
          "-n",
          N1,
          "run",
          "--rm",
          "--log-uri",
          `file://${d.dir}/log.txt`,
          "docker.io/library/bb:1",
          "r5",
          "sh",
          "-c",
          "echo to-log",
        ]),
        "log-uri",
      );
      assert.equal(await Deno.readTextFile(`${d.dir}/log.txt`), "to-log\n");
      const nullIO = await b([
        "-n",
        N1,
        "run",
        "--rm",
        "--null-io",
        "docker.io/library/bb:1",
        "r6",
        "sh",
        "-c",
        "echo lost; exit 5",
      ]);
      assert.equal(nullIO.code, 5);
      assert.equal(nullIO.stdout, "");
      // A signal death passes through as 128+N; signals to berth reach the task (sig-proxy).
      const running = async (id: string) => {
        for (let i = 0; i < 150; i++) {
          if (
            new RegExp(`\\n${id} +\\d+ +RUNNING`).test((await b(["-n", N1, "tasks", "ls"])).stdout)
          ) return;
          await new Promise((r) => setTimeout(r, 100));
        }
        throw new Error(`task ${id} did not run`);
      };
      const killed = spawn(BERTH, [
        "-a",
        d.address,
        "-n",
        N1,
        "run",
        "--rm",
        "docker.io/library/bb:1",
        "r7",
        "sleep",
        "30",
      ], { stdin: "null", stdout: "null", stderr: "null" });
      await running("r7");
      ok(await b(["-n", N1, "tasks", "kill", "-s", "KILL", "r7"]), "kill r7");
      assert.equal((await killed.status).code, 137);
      const proxied = spawn(BERTH, [
        "-a",
        d.address,
        "-n",
        N1,
        "run",
        "--rm",
        "docker.io/library/bb:1",
        "r8",
        "sh",
        "-c",
        "trap 'exit 42' TERM; sleep 30 & wait",
      ], { stdin: "null", stdout: "null", stderr: "null" });
      await running("r8");
      // PID 1 ignores signals it has no handler for, so the container traps TERM.
      proxied.kill("SIGTERM");
      assert.equal((await proxied.status).code, 42);
      // containers create + tasks start (foreground) and a created container's task, detached, then attach
      ok(
        await b([
          "-n",
          N1,
          "containers",
          "create",
          "docker.io/library/bb:1",
          "r9",
          "sh",
          "-c",
          "echo started; exit 4",
        ]),
        "create r9",
      );
      const started = await b(["-n", N1, "tasks", "start", "r9"]);
      assert.equal(started.code, 4, started.stderr);
      assert.equal(started.stdout, "started\n");
      ok(await b(["-n", N1, "c", "rm", "r9"]), "rm r9");
      // A detached task's fifos stay; attach reopens them (stdin in, output out, exit status back).
      ok(
        await b([
          "-n",
          N1,
          "run",
          "-d",
          "docker.io/library/bb:1",
          "a1",
          "sh",
          "-c",
          "while read l; do echo got $l; done; echo bye; exit 6",
        ]),
        "run -d a1",
      );
      await running("a1");
      const attach = await runTool("sh", [
        "-c",
        `echo hello | "${BERTH}" -a ${d.address} -n ${N1} tasks attach a1`,
      ]);
      assert.equal(attach.code, 6, attach.stderr);
      assert.equal(attach.stdout, "got hello\nbye\n");
      assert.equal((await b(["-n", N1, "tasks", "rm", "a1"])).code, 6);
      ok(await b(["-n", N1, "c", "rm", "a1"]), "rm a1");
      ok(await b(["-n", N1, "run", "-d", "docker.io/library/bb:1", "r3", "sleep", "60"]), "run -d");
      assert.match(ok(await b(["-n", N1, "tasks", "ls"]), "tasks ls"), /\nr3 +\d+ +RUNNING/);
      assert.match(ok(await b(["-n", N1, "tasks", "ps", "r3"]), "ps"), /^PID +INFO\n\d+/);
      assert.equal(
        ok(
          await b(["-n", N1, "tasks", "exec", "--exec-id", "e1", "r3", "sh", "-c", "echo in-exec"]),
          "exec",
        ),
        "in-exec\n",
      );
      const execTty = await runTool("sh", [
        "-c",
        `sleep 10 | script -qec "stty cols 99 rows 33; $CMD" /dev/null`,
      ], {
        env: { CMD: `"${BERTH}" -a ${d.address} -n ${N1} tasks exec -t --exec-id e2 r3 stty size` },
        timeoutMs: 60_000,
      });
      assert.match(execTty.stdout, /^33 99\r*\n$/, JSON.stringify(execTty.stdout + execTty.stderr));
      ok(await b(["-n", N1, "tasks", "pause", "r3"]), "pause");
      assert.match(ok(await b(["-n", N1, "tasks", "ls"]), "ls"), /r3 +\d+ +PAUSED/);
      ok(await b(["-n", N1, "tasks", "resume", "r3"]), "resume");
      assert.match(
        ok(await b(["-n", N1, "tasks", "metrics", "r3"]), "metrics"),
        /^ID +TIMESTAMP +\nr3 +\S+ +\n\nMETRIC +VALUE/,
      );
      const state = JSON.parse(
        ok(await b(["-n", N1, "shims", "--id", "r3", "state"]), "shim state"),
      );
      assert.equal(state.status, "RUNNING");
      assert.equal(state.id, "r3");
      ok(await b(["-n", N1, "tasks", "kill", "-s", "SIGKILL", "-a", "r3"]), "kill");
      await new Promise((r) => setTimeout(r, 500));
      await b(["-n", N1, "tasks", "rm", "r3"]);
      ok(await b(["-n", N1, "c", "rm", "r3"]), "c rm r3");

      // -t through a real pty (script(1)): the container sees the terminal's
      // size at start and again after a resize (SIGWINCH -> ResizePty).
      // berth runs in the foreground of the pty; a background subshell resizes it,
      // and the kernel sends berth SIGWINCH.
      const inner = [
        `stty cols 123 rows 45`,
        `t=$(tty)`,
        `(until "${BERTH}" -a ${d.address} -n ${N1} tasks ls | grep -q "^t1 .*RUNNING"; do sleep 0.2; done; sleep 0.5; stty -F "$t" cols 77 rows 22) &`,
        `"${BERTH}" -a ${d.address} -n ${N1} run -t --rm docker.io/library/bb:1 t1 sh -c 'stty size; sleep 4; stty size'`,
        `echo "status=$?"`,
      ].join("\n");
      // script's stdin stays open (a closed tty input would end the container's console).
      const tty = await runTool("sh", ["-c", `sleep 15 | script -qec "$INNER" /dev/null`], {
        timeoutMs: 60_000,
        env: { INNER: inner },
      });
      assert.match(
        tty.stdout,
        /45 123\r*\n[\s\S]*22 77\r*\n[\s\S]*status=0/,
        JSON.stringify(tty.stdout + tty.stderr),
      );
      // The terminal was restored: the outer shell's echo works in cooked mode (\r\n line ends, no raw leftovers).
      assert.doesNotMatch(ok(await b(["-n", N1, "c", "ls", "-q"]), "c ls"), /t1/);
    }
    const noTask = await b(["-n", N1, "tasks", "kill", "ghost"]);
    assert.ok(noTask.code === 3 || noTask.code === 7, noTask.stderr);

    // containers rm (with its snapshot), then namespaces rm
    assert.equal(ok(await b(["-n", N1, "c", "rm", "c1"]), "c rm"), "");
    assert.doesNotMatch(ok(await b(["-n", N1, "snapshots", "ls"]), "snapshots after rm"), /\nc1 /);
    assert.equal((await b(["-n", N1, "c", "rm", "c1"])).code, 3);
    assert.match(
      ok(await b(["-n", N1, "images", "rm", "docker.io/library/bb:2"]), "images rm"),
      /bb:2/,
    );
    ok(await b(["ns", "rm", "n3"]), "ns rm");
  } finally {
    // Whatever a failed step left running: kill and delete its tasks before the daemon goes.
    const left = await d.berth(["-n", N1, "tasks", "ls", "-q"]);
    for (const id of left.code === 0 ? left.stdout.split("\n").filter((x) => x) : []) {
      await d.berth(["-n", N1, "tasks", "rm", "-f", id]);
    }
    await d.stop();
    // runc's root for the namespace stays behind its last container (as with containerd's shim).
    removeIfEmpty(`/run/berth/runc/${N1}`);
  }
});

Deno.test("client: the same session with ctr against containerd has the same shape", async () => {
  const ctd = await startContainerd();
  let d: Daemon | undefined;
  try {
    d = await startDaemon();
    const ns = ctd.namespace;
    const session: string[][] = [
      ["namespaces", "create", `${ns}x`, "a=b"],
      ["namespaces", "label", `${ns}x`, "c=d"],
      ["namespaces", "ls"],
      ["-n", `${ns}x`, "containers", "ls"],
      ["-n", `${ns}x`, "images", "ls"],
      ["-n", `${ns}x`, "leases", "ls"],
      ["-n", `${ns}x`, "snapshots", "ls"],
      ["-n", `${ns}x`, "content", "ls"],
      ["-n", `${ns}x`, "tasks", "ls"],
      ["plugins", "ls"],
      ["namespaces", "rm", `${ns}x`],
    ];
    for (const args of session) {
      const c = await runTool("ctr", ["--address", ctd.address, ...args]);
      const r = await d!.berth(args);
      const what = args.join(" ");
      assert.equal(c.code, 0, `ctr ${what}: ${c.stderr}`);
      if (args.includes("tasks") && r.code === 7) continue; // no Tasks service in this daemon yet
      assert.equal(r.code, 0, `berth ${what}: ${r.stderr}`);
      // Same header line, laid out the same way, for every table (plugins: same columns; widths follow the rows).
      if (args.includes("plugins")) assert.deepEqual(header(r.stdout), header(c.stdout));
      else assert.equal(r.stdout.split("\n")[0], c.stdout.split("\n")[0], `header of ${what}`);
      if (!args.includes("plugins")) {
        assert.equal(
          r.stdout.split("\n").length,
          c.stdout.split("\n").length,
          `rows of ${what}:\nctr:\n${c.stdout}\nberth:\n${r.stdout}`,
        );
      }
      if (args[0] === "namespaces" && args[1] === "ls") {
        // Both list the namespace with both labels.
        for (const out of [c.stdout, r.stdout]) {
          assert.match(out, new RegExp(`\n${ns}x +a=b,c=d +\n`));
        }
      }
    }
  } finally {
    await d?.stop();
    await ctd.stop();
  }
});

Deno.test("client: images pull and content fetch show progress as bars on a tty and as lines otherwise", async () => {
  const d = await startDaemon();
  let reg: { stop(): Promise<void> } | undefined;
  const ns = `p${crypto.randomUUID().slice(0, 8)}`;
  try {
    const registry = await startRegistry(`${d.dir}/registry`);
    reg = registry;
    const rootDir = await makeRootDir(d.dir);
    ok(
      await d.berth(["-n", ns, "images", "import", "--from-dir", rootDir, "bb:1", "--cmd", "true"]),
      "import",
    );
    ok(
      await d.berth(["-n", ns, "images", "export", `${d.dir}/bb.tar`, "docker.io/library/bb:1"]),
      "export",
    );
    ok(
      await runTool("skopeo", [
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        `oci-archive:${d.dir}/bb.tar`,
        `docker://${registry.host}/bb:t`,
      ]),
      "skopeo push",
    );
    const ref = `${registry.host}/bb:t`;
    // Not a terminal: one plain line per step, no escape sequences.
    const plain = await d.berth(["-n", ns, "images", "pull", "--plain-http", ref]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.ok(!plain.stdout.includes("\x1b["), "no escape sequences when stdout is not a terminal");
    assert.match(plain.stdout, /^sha256:[0-9a-f]{64} (resolved|exists|downloading|done)/m);
    assert.match(
      plain.stdout,
      new RegExp(
        `^${ref.replace(/[.]/g, "\\.")}: sha256:\\S+ \\(fetched \\d+, existing \\d+\\)$`,
        "m",
      ),
    );
    assert.match(
      ok(await d.berth(["-n", ns, "images", "check"]), "check"),
      new RegExp(`${ref.replace(/[.]/g, "\\.")} .* true`),
    );
    // A terminal: bars redrawn in place.
    ok(await d.berth(["-n", ns, "images", "rm", ref]), "rm");
    const ns2 = `${ns}b`;
    const tty = await runTool("script", [
      "-qec",
      `"${BERTH}" -a ${d.address} -n ${ns2} images pull --plain-http ${ref}`,
      "/dev/null",
    ], { timeoutMs: 60_000 });
    assert.equal(tty.code, 0, tty.stdout);
    assert.ok(tty.stdout.includes("\x1b[2K"), "bars are redrawn in place on a terminal");
    assert.match(tty.stdout, /\|\++\| \S+ \S+\/\S+ \S+/);
    // content fetch: the blobs, no unpack.
    const ns3 = `${ns}c`;
    ok(await d.berth(["-n", ns3, "content", "fetch", "--plain-http", ref]), "content fetch");
    assert.equal(
      ok(await d.berth(["-n", ns3, "content", "ls", "-q"]), "content ls").trim().split("\n").length,
      3,
    ); // manifest, config, layer
    assert.match(ok(await d.berth(["-n", ns3, "images", "check"]), "check fetched"), / false\n$/);
  } finally {
    await reg?.stop();
    await d.stop();
  }
});
