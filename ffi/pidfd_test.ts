import assert from "node:assert/strict";
import { spawn } from "../src/spawn/mod.ts";
import { SyscallError } from "./errno.ts";
import { close, pipe } from "./fd.ts";
import { pidfdOpen, pidfdSendSignal, waitPid, waitPidfd } from "./pidfd.ts";
import { getChildSubreaper, setChildSubreaper } from "./process.ts";
import { noLeaks, sleep } from "./testing.ts";

/**
 * Starts `sh -c '<cmd> & echo $!'` and returns the pid of the backgrounded
 * process, orphaned once sh exits (sh itself is reaped by Deno).
 */
async function startOrphan(cmd = "sleep 30"): Promise<number> {
  const sh = spawn("sh", ["-c", `${cmd} </dev/null >/dev/null 2>&1 & echo $!`], { stderr: "null" });
  const out = await new Response(sh.stdout).text();
  const status = await sh.status;
  assert.equal(status.code, 0);
  const pid = Number(out.trim());
  assert.ok(pid > 0, `no pid in ${JSON.stringify(out)}`);
  return pid;
}

function parentOf(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/^PPid:\s+(\d+)$/m.exec(status)![1]);
}

function inProc(pid: number): boolean {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
}

/** Kills and reaps an orphan of ours that a failed test left behind. */
function reapOrphan(pid: number): void {
  try {
    const fd = pidfdOpen(pid);
    try {
      pidfdSendSignal(fd, "SIGKILL");
      waitPidfd(fd);
    } finally {
      close(fd);
    }
  } catch {
    // already gone
  }
}

/** Runs `fn` as a child subreaper, switching that off again afterwards. */
async function asSubreaper(fn: () => Promise<void>): Promise<void> {
  setChildSubreaper(true);
  try {
    assert.equal(getChildSubreaper(), true);
    await fn();
  } finally {
    setChildSubreaper(false);
  }
  assert.equal(getChildSubreaper(), false);
}

Deno.test(
  "an orphaned grandchild is reparented to the subreaper and reaped through its pidfd",
  noLeaks(() =>
    asSubreaper(async () => {
      const pid = await startOrphan();
      let reaped = false;
      const fd = pidfdOpen(pid);
      try {
        assert.equal(parentOf(pid), Deno.pid);
        const wait = waitPidfd(fd, { nonblocking: true });
        const early = await Promise.race([wait, sleep(100).then(() => "pending")]);
        assert.equal(early, "pending");

        // Deno's own children keep their exit codes while the wait is on.
        const other = await spawn("sh", ["-c", "exit 7"], { stdout: "null", stderr: "null" })
          .status;
        assert.equal(other.code, 7);

        pidfdSendSignal(fd, "SIGTERM");
        const exit = await wait;
        reaped = true;
        assert.deepEqual(exit, { pid, code: "killed", status: 15 });
        assert.equal(inProc(pid), false, "the reaped process is still in /proc");
      } finally {
        close(fd);
        if (!reaped) reapOrphan(pid);
      }
    })
  ),
);

Deno.test(
  "an orphan's exit code is reported as exited",
  noLeaks(() =>
    asSubreaper(async () => {
      const pid = await startOrphan("sh -c 'sleep 0.1; exit 3'");
      const fd = pidfdOpen(pid);
      try {
        assert.deepEqual(await waitPidfd(fd, { nonblocking: true }), {
          pid,
          code: "exited",
          status: 3,
        });
      } finally {
        close(fd);
        reapOrphan(pid);
      }
    })
  ),
);

Deno.test(
  "waitPid with noHang finds nothing while the orphan runs, then reaps it",
  noLeaks(() =>
    asSubreaper(async () => {
      const pid = await startOrphan();
      try {
        assert.equal(waitPid(pid, { noHang: true }), null);
        const fd = pidfdOpen(pid);
        pidfdSendSignal(fd, "SIGKILL");
        close(fd);
        assert.deepEqual(waitPid(pid), { pid, code: "killed", status: 9 });
      } finally {
        reapOrphan(pid);
      }
    })
  ),
);

Deno.test(
  "a pidfd signal reaches exactly its process",
  noLeaks(async () => {
    const a = spawn("sleep", ["30"], { stdout: "null", stderr: "null" });
    const b = spawn("sleep", ["30"], { stdout: "null", stderr: "null" });
    const fdA = pidfdOpen(a.pid);
    const fdB = pidfdOpen(b.pid);
    try {
      pidfdSendSignal(fdA, "SIGTERM");
      assert.equal((await a.status).signal, "SIGTERM");
      pidfdSendSignal(fdB, 0); // throws if b were gone
      assert.equal(
        await Promise.race([b.status.then(() => "ended"), sleep(100).then(() => "alive")]),
        "alive",
      );
      pidfdSendSignal(fdB, "SIGKILL");
      assert.equal((await b.status).signal, "SIGKILL");
    } finally {
      close(fdA);
      close(fdB);
      for (const c of [a, b]) {
        try {
          c.kill("SIGKILL");
        } catch {
          // already ended
        }
        await c.status;
      }
    }
  }),
);

Deno.test(
  "signalling the pidfd of a reaped process fails with ESRCH",
  noLeaks(async () => {
    const child = spawn("sleep", ["30"], { stdout: "null", stderr: "null" });
    const fd = pidfdOpen(child.pid);
    try {
      child.kill("SIGKILL");
      await child.status;
      assert.throws(() => pidfdSendSignal(fd, "SIGTERM"), (err) => {
        assert.ok(err instanceof SyscallError);
        assert.equal(err.call, "pidfd_send_signal");
        assert.equal(err.errno, 3);
        assert.equal(err.code, "ESRCH");
        assert.equal(err.message, `pidfd_send_signal(pidfd ${fd}, 15): ESRCH (No such process)`);
        return true;
      });
    } finally {
      close(fd);
    }
  }),
);

Deno.test("pidfdOpen of a pid that does not exist fails with ESRCH", () => {
  // pid_max is at most 2^22, so this pid never exists.
  assert.throws(() => pidfdOpen(2 ** 22 + 1), { code: "ESRCH", call: "pidfd_open" });
  assert.throws(() => pidfdOpen(0), { code: "EINVAL" });
});

Deno.test(
  "the nonblocking wait reports the errno of the failing call",
  noLeaks(async () => {
    // Not our child to reap (Deno reaped it): ECHILD.
    const child = spawn("true", [], { stdout: "null", stderr: "null" });
    const fd = pidfdOpen(child.pid);
    await child.status;
    await assert.rejects(waitPidfd(fd, { nonblocking: true }), { call: "waitid", code: "ECHILD" });
    close(fd);
    // Not a pidfd: EBADF.
    const [r, w] = pipe();
    await assert.rejects(waitPidfd(r, { nonblocking: true }), { call: "waitid", code: "EBADF" });
    close(r);
    close(w);
  }),
);

Deno.test(
  "a wait that ends because another caller reaped the process reports ECHILD",
  noLeaks(() =>
    asSubreaper(async () => {
      const pid = await startOrphan();
      const fd = pidfdOpen(pid);
      try {
        const wait = waitPidfd(fd, { nonblocking: true });
        await sleep(50); // the worker thread is now waiting on the pidfd
        pidfdSendSignal(fd, "SIGKILL");
        assert.deepEqual(waitPid(pid), { pid, code: "killed", status: 9 });
        await assert.rejects(wait, { call: "waitid", errno: 10, code: "ECHILD" });
      } finally {
        close(fd);
        reapOrphan(pid);
      }
    })
  ),
);

Deno.test(
  "an aborted or closed-under wait rejects and leaves the process unreaped",
  noLeaks(() =>
    asSubreaper(async () => {
      const pid = await startOrphan();
      try {
        const fd = pidfdOpen(pid);
        const ac = new AbortController();
        const aborted = waitPidfd(fd, { nonblocking: true, signal: ac.signal });
        await sleep(20);
        ac.abort();
        await assert.rejects(aborted, { name: "AbortError" });

        const closed = waitPidfd(fd, { nonblocking: true });
        await sleep(20);
        close(fd);
        await assert.rejects(closed, { call: "waitid", code: "EBADF" });
        assert.equal(parentOf(pid), Deno.pid); // still running, still ours
      } finally {
        reapOrphan(pid);
      }
    })
  ),
);
