import assert from "node:assert/strict";
import { procStat, procState } from "./mod.ts";

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
