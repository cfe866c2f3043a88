/**
 * The client's error hints say what is true at that moment: each case of
 * issue 19 (and the ones found auditing the rest) against a real daemon.
 *
 * Needs `make build` first (bin/berth).
 */
import assert from "node:assert/strict";
import { clearNamespace, makeRootDir, privateCopy, startDaemon } from "./support/berth.ts";
import type { ToolResult } from "./support/tool.ts";

const BERTH = (await privateCopy()).path;

function ok(r: ToolResult, what: string): string {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r.stdout;
}

/** Asserts exit status `code` and stderr exactly `stderr`. */
function fails(r: ToolResult, code: number, stderr: string, what: string): void {
  assert.equal(r.code, code, `${what}: exit ${r.code}\nstderr: ${r.stderr}`);
  assert.equal(r.stderr, stderr, what);
  assert.doesNotMatch(r.stderr, /not found[^\n]*not found/, `${what}: "not found" twice`);
}

Deno.test("client hints: what is missing, the real state, each error once", async () => {
  const d = await startDaemon(BERTH);
  const ns = `hints${Math.floor(Math.random() * 1e6)}`;
  const b = (args: string[]) => d.berth(["-n", ns, ...args]);
  try {
    const root = await makeRootDir(d.dir);
    ok(await b(["images", "import", "--from-dir", root, "hints:1"]), "import");
    const image = "docker.io/library/hints:1";
    ok(await b(["run", "-d", image, "live", "sleep", "1000"]), "run -d live");

    // -t without a terminal (the test's stdin is /dev/null): said at once,
    // nothing from a shell started in the container.
    const noTty = "berth: -t needs a terminal, and stdin is not one: " +
      "run it from a terminal, or leave out -t\n";
    const exec = await b(["tasks", "exec", "-t", "--exec-id", "sh1", "live", "sh"]);
    fails(exec, 2, noTty, "exec -t");
    assert.equal(exec.stdout, "", "exec -t printed the container's output");
    fails(await b(["run", "-t", "--rm", image, "tty1", "sh"]), 2, noTty, "run -t");
    ok(await b(["containers", "create", "-t", image, "tty2", "sh"]), "create -t");
    fails(
      await b(["tasks", "start", "tty2"]),
      2,
      'berth: container "tty2" (created with -t) needs a terminal, and stdin is not one: ' +
        "run it from a terminal, or start it with -d\n",
      "tasks start of a -t container",
    );
    ok(await b(["containers", "rm", "tty2"]), "rm tty2");
    fails(
      await b(["containers", "info", "tty1"]),
      3,
      `berth: container "tty1": not found\nlist containers with: berth -n ${ns} containers ls\n`,
      "run -t made no container",
    );

    // A container that does not exist is named as such (no `tasks start` hint).
    const noContainer = (id: string) =>
      `berth: container "${id}": not found\nlist containers with: berth -n ${ns} containers ls\n`;
    fails(await b(["tasks", "delete", "nosuchtask"]), 3, noContainer("nosuchtask"), "delete");
    fails(await b(["tasks", "kill", "nosuchtask"]), 3, noContainer("nosuchtask"), "kill");
    // One that exists without a task: then starting one is the advice.
    ok(await b(["containers", "create", image, "idle", "true"]), "create idle");
    fails(
      await b(["tasks", "delete", "idle"]),
      3,
      `berth: container "idle" has no task\nstart one with: berth -n ${ns} tasks start idle\n`,
      "delete of no task",
    );
    fails(
      await b(["tasks", "kill", "--exec-id", "nope", "live"]),
      3,
      `berth: task "live" has no process "nope"\nlist its processes with: berth -n ${ns} tasks ps live\n`,
      "kill of a missing exec",
    );

    // A running task: its state, and how to stop it (sleep ignores SIGTERM).
    fails(
      await b(["containers", "rm", "live"]),
      5,
      `berth: cannot delete container "live": its task is RUNNING\n` +
        `stop it first: berth -n ${ns} tasks kill live (-s SIGKILL if it ignores SIGTERM)\n`,
      "containers rm of a running one",
    );
    fails(
      await b(["tasks", "start", "live"]),
      4,
      `berth: container "live" has a task already (RUNNING)\nstop it with: berth -n ${ns} tasks kill live, then delete it with: berth -n ${ns} tasks delete live\n`,
      "tasks start of a running one",
    );

    // A stopped task: its state and exit status, and what to do with it.
    ok(await b(["tasks", "kill", "-s", "SIGKILL", "live"]), "kill live");
    let stopped = "";
    for (let i = 0; i < 100 && !/live\s+\d+\s+STOPPED/.test(stopped); i++) {
      await new Promise((r) => setTimeout(r, 100));
      stopped = ok(await b(["tasks", "ls"]), "tasks ls");
    }
    fails(
      await b(["tasks", "kill", "live"]),
      5,
      `berth: task "live" is STOPPED (exit status 137)\ndelete it with: berth -n ${ns} tasks delete live\n`,
      "kill of a stopped task",
    );
    // Like ctr, a delete exits with the task's exit status.
    assert.equal((await b(["tasks", "delete", "live"])).code, 137, "delete live");

    // Deletes of several: each failure once, the last decides the status.
    const noImage = (ref: string) =>
      `berth: image "${ref}": not found\nlist images with: berth -n ${ns} images ls\n`;
    fails(await b(["images", "rm", "nosuch:1"]), 3, noImage("nosuch:1"), "images rm");
    const two = await b(["images", "rm", "nosuch:1", image, "nosuch:2"]);
    fails(two, 3, noImage("nosuch:1") + noImage("nosuch:2"), "images rm of three");
    assert.equal(two.stdout, `${image}\n`);
    fails(
      await b(["containers", "rm", "ghost1", "ghost2"]),
      3,
      noContainer("ghost1") + noContainer("ghost2"),
      "containers rm of two",
    );

    // The runtime's reason, prefixed once per layer.
    ok(await b(["images", "import", "--from-dir", root, "hints:1"]), "import again");
    const bad = await b(["run", "--rm", image, "bad", "/nonexistent"]);
    assert.equal(bad.code, 1, bad.stderr);
    assert.match(
      bad.stderr,
      /^berth: OCI runtime create failed: runc create failed: unable to start container process: exec: "\/nonexistent": stat \/nonexistent: no such file or directory\n$/,
    );
    ok(await b(["containers", "rm", "idle", "live"]), "containers rm");
  } finally {
    const cleared = await clearNamespace(d.berth, ns);
    await d.stop();
    await cleared.afterStop();
  }
});
