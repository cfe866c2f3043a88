import assert from "node:assert/strict";
import { BerthError, Code } from "../errdefs/mod.ts";
import { Echo } from "../gen/berth/testing/v1/echo_pb.ts";
import { connect } from "./client.ts";
import { serviceClient } from "./stubs.ts";
import { startEcho } from "./fixture_test.ts";
import { acceptedOn, type PeerCred, requireSameUser } from "./peercred.ts";

Deno.test("acceptedOn: connected sockets on the path, not the listener or the backlog", () => {
  const table = [
    "Num       RefCount Protocol Flags    Type St Inode Path",
    "00000000e8656a9e: 00000002 00000000 00010000 0001 01 124303 /run/x.sock",
    "00000000eed7f425: 00000003 00000000 00000000 0001 02     0 /run/x.sock",
    "000000000df420af: 00000003 00000000 00000000 0001 03 124306 /run/x.sock",
    "000000000df420b0: 00000003 00000000 00000000 0001 03 124307 /run/other.sock",
    "000000000df420b1: 00000003 00000000 00000000 0001 03 124308",
    "000000000df420b2: 00000003 00000000 00000000 0001 03 124309 /run/x.sock with space",
  ].join("\n");
  assert.deepEqual([...acceptedOn(table, "/run/x.sock")], [124306]);
  assert.deepEqual([...acceptedOn(table, "/run/x.sock with space")], [124309]);
});

Deno.test("requireSameUser hands SO_PEERCRED the accepted socket's fd and refuses other users", async () => {
  const verdicts: number[] = [];
  const asked: Array<{ fd: number; inode: number }> = [];
  let path = "";
  const reader = (fd: number): PeerCred => {
    const inode = Number(/socket:\[(\d+)\]/.exec(Deno.readLinkSync(`/proc/self/fd/${fd}`))?.[1]);
    asked.push({ fd, inode });
    // The fd must be a socket accepted on the server's own path.
    assert.ok(acceptedOn(Deno.readTextFileSync("/proc/net/unix"), path).has(inode));
    return { pid: 1, uid: verdicts.shift()!, gid: 0 };
  };
  const me = Deno.uid()!;
  const srv = await startEcho({ authorize: requireSameUser(reader) });
  path = srv.path;
  try {
    verdicts.push(me);
    const a = await connect(srv.path);
    assert.equal((await serviceClient(a, Echo).say({ text: "a" })).text, "a");
    verdicts.push(me + 1);
    const b = await connect(srv.path);
    // Refused with PermissionDenied: every call says so, and none runs.
    await assert.rejects(
      serviceClient(b, Echo).say({ text: "b" }),
      (e: unknown) =>
        e instanceof BerthError && e.code === Code.PermissionDenied &&
        /runs as uid \d+, only uid \d+ may connect/.test(e.message),
    );
    b.close();
    // The first connection is untouched; a third same-user one works too.
    assert.equal((await serviceClient(a, Echo).say({ text: "a2" })).text, "a2");
    verdicts.push(me);
    const c = await connect(srv.path);
    assert.equal((await serviceClient(c, Echo).say({ text: "c" })).text, "c");
    assert.equal(asked.length, 3);
    assert.equal(
      new Set(asked.map((x) => x.inode)).size,
      3,
      "each check looked at a different socket",
    );
    a.close();
    c.close();
  } finally {
    await srv.stop();
  }
});
