import assert from "node:assert/strict";
import { spawn } from "../src/spawn/mod.ts";
import { close, pipe } from "./fd.ts";
import { pidfdOpen } from "./pidfd.ts";
import {
  getChildSubreaper,
  getPdeathsig,
  getProcessName,
  Namespace,
  setChildSubreaper,
  setns,
  setPdeathsig,
  setProcessName,
} from "./process.ts";
import { signalName, signalNumber } from "./signal.ts";
import { noLeaks } from "./testing.ts";

Deno.test("child subreaper switches on and off", () => {
  const was = getChildSubreaper();
  try {
    setChildSubreaper(true);
    assert.equal(getChildSubreaper(), true);
    setChildSubreaper(false);
    assert.equal(getChildSubreaper(), false);
  } finally {
    setChildSubreaper(was);
  }
});

Deno.test("the parent-death signal is set and read back", () => {
  const was = getPdeathsig();
  try {
    setPdeathsig("SIGKILL");
    assert.equal(getPdeathsig(), 9);
    setPdeathsig(0);
    assert.equal(getPdeathsig(), 0);
  } finally {
    setPdeathsig(was);
  }
});

Deno.test("the thread name shows in /proc and is cut to 15 bytes", () => {
  const was = getProcessName();
  try {
    setProcessName("berth-shim-test-long-name");
    assert.equal(getProcessName(), "berth-shim-test");
    assert.equal(Deno.readTextFileSync("/proc/thread-self/comm").trim(), "berth-shim-test");
  } finally {
    setProcessName(was);
  }
  assert.throws(() => setProcessName("a\0b"), { call: "prctl", code: "EINVAL" });
});

Deno.test(
  "setsid makes a child a session leader once, then EPERM",
  noLeaks(async () => {
    const script = `
      import { setsid } from ${JSON.stringify(new URL("./process.ts", import.meta.url).href)};
      const sid = setsid();
      let again = "";
      try { setsid(); } catch (e) { again = e.code; }
      console.log(JSON.stringify({ sid, again }));`;
    const child = spawn(Deno.execPath(), ["eval", "--no-config", script]);
    const [out, err, status] = await Promise.all([
      new Response(child.stdout).text(),
      new Response(child.stderr).text(),
      child.status,
    ]);
    assert.equal(status.code, 0, err);
    assert.deepEqual(JSON.parse(out), { sid: child.pid, again: "EPERM" });
  }),
);

Deno.test(
  "setns joins a namespace through a pidfd and refuses what a threaded process cannot do",
  noLeaks(() => {
    const self = pidfdOpen(Deno.pid);
    const [r, w] = pipe();
    try {
      setns(self, Namespace.net | Namespace.uts); // our own: a no-op that must succeed
      assert.throws(() => setns(self, Namespace.mount), { call: "setns", code: "EINVAL" });
      assert.throws(() => setns(r, Namespace.net), { call: "setns", code: "EINVAL" });
    } finally {
      close(self);
      close(r);
      close(w);
    }
  }),
);

Deno.test("signal names and numbers convert both ways", () => {
  assert.equal(signalNumber("SIGTERM"), 15);
  assert.equal(signalNumber("KILL"), 9);
  assert.equal(signalNumber("SIGRTMIN+2"), 36);
  assert.equal(signalNumber(0), 0);
  assert.equal(signalName(17), "SIGCHLD");
  assert.equal(signalName(36), "SIGRTMIN+2");
  assert.throws(() => signalNumber("SIGNOPE"), { code: "EINVAL" });
  assert.throws(() => signalNumber(65), { code: "EINVAL" });
});
