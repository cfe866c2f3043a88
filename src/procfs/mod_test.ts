import assert from "node:assert/strict";
import { procStat, procState, signalReach, untilSignalReaches } from "./mod.ts";

Deno.test("procStat: this process's state and parent, a command name with spaces and parens", async () => {
  const self = procStat("self");
  assert.ok(self);
  assert.match(self[0], /^[RS]$/);
  assert.equal(Number(self[1]), Deno.ppid);
  // A child whose command name holds ") " must still parse from its last ")".
  const dir = await Deno.makeTempDir();
  try {
    const odd = `${dir}/a) b`;
    await Deno.copyFile("/bin/sleep", odd);
    const child = new Deno.Command(odd, { args: ["30"] }).spawn();
    try {
      const f = procStat(child.pid);
      assert.ok(f);
      assert.equal(Number(f[1]), Deno.pid);
      assert.match(procState(child.pid) ?? "", /^[RS]$/);
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("procState: undefined for a pid that is gone", async () => {
  const child = new Deno.Command("true").spawn();
  const pid = child.pid;
  await child.status;
  assert.equal(procState(pid), undefined);
});

Deno.test("signalReach/untilSignalReaches: a pid namespace's init is waited for until it catches the signal", async () => {
  // sh is pid 1 of a new pid namespace and traps TERM only after 0.3 s.
  const outer = new Deno.Command("unshare", {
    args: [
      "--pid",
      "--fork",
      "sh",
      "-c",
      'sleep 0.3; trap "exit 0" TERM; while :; do sleep 0.05; done',
    ],
  }).spawn();
  try {
    let init = 0;
    const deadline = Date.now() + 5000;
    while (init === 0 && Date.now() < deadline) {
      const kids = Deno.readTextFileSync(`/proc/${outer.pid}/task/${outer.pid}/children`).trim();
      if (kids !== "") init = Number(kids.split(" ")[0]);
      else await new Promise((r) => setTimeout(r, 10));
    }
    assert.ok(init > 0, "the namespace's init started");
    assert.deepEqual(signalReach(init, 15), { namespaceInit: true, caught: false });
    await untilSignalReaches(init, 15, Date.now() + 5000);
    assert.deepEqual(signalReach(init, 15), { namespaceInit: true, caught: true });
    Deno.kill(init, "SIGTERM");
    assert.equal((await outer.status).code, 0, "the trapped TERM ended it");
  } finally {
    try {
      outer.kill("SIGKILL");
    } catch { /* gone */ }
    await outer.status;
  }
  // An ordinary process gets signals whether it catches them or not: no wait.
  assert.equal(signalReach(Deno.pid, 15)?.namespaceInit, false);
  assert.equal(signalReach(2 ** 22 + 1, 15), undefined);
});
