import assert from "node:assert/strict";
import { spawn } from "../src/spawn/mod.ts";
import { close, pipe, readFd, writeFd } from "./fd.ts";
import {
  accept,
  connectUnix,
  getPeerCred,
  listenUnix,
  recvFds,
  sendFds,
  socketpair,
} from "./socket.ts";
import { noLeaks, openFds, sleep } from "./testing.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test(
  "an fd passed over a socketpair is usable on the other side",
  noLeaks(async () => {
    const [a, b] = socketpair();
    const [r, w] = pipe();
    try {
      await sendFds(a, enc.encode("fd"), [w]);
      const buf = new Uint8Array(16);
      const got = await recvFds(b, buf);
      assert.equal(dec.decode(buf.subarray(0, got.bytes)), "fd");
      assert.equal(got.fds.length, 1);
      const [w2] = got.fds;
      assert.notEqual(w2, w);
      assert.equal(openFds().get(w2), openFds().get(w), "the copy is the same pipe");
      await writeFd(w2, enc.encode("through the copy"));
      close(w2);
      const n = await readFd(r, buf.subarray(0, 16));
      assert.equal(dec.decode(buf.subarray(0, n)), "through the copy");
    } finally {
      for (const fd of [a, b, r, w]) close(fd);
    }
  }),
);

Deno.test(
  "getPeerCred on a socketpair end gives our own pid, uid and gid",
  noLeaks(() => {
    const [a, b] = socketpair();
    try {
      assert.deepEqual(getPeerCred(a), { pid: Deno.pid, uid: Deno.uid(), gid: Deno.gid() });
    } finally {
      close(a);
      close(b);
    }
  }),
);

// The client half of the console socket protocol, as runc plays it: open a
// pty, connect, send the master with its name, then use the slave.
const CLIENT = `
import * as ffi from ${JSON.stringify(new URL("./mod.ts", import.meta.url).href)};
const pty = ffi.openPty();
const sock = await ffi.connectUnix(Deno.args[0]);
await ffi.sendFds(sock, new TextEncoder().encode(pty.path), [pty.master]);
ffi.close(pty.master);
ffi.close(sock);
await ffi.writeFd(pty.slave, new TextEncoder().encode("ping\\n"));
const buf = new Uint8Array(64);
const n = await ffi.readFd(pty.slave, buf);
console.log(new TextDecoder().decode(buf.subarray(0, n)).trim());
ffi.close(pty.slave);
`;

Deno.test(
  "console socket: a listener receives a pty master from another process and talks through it",
  noLeaks(async () => {
    const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
    const path = `${dir}/console.sock`;
    await Deno.writeTextFile(`${dir}/client.ts`, CLIENT);
    const listener = listenUnix(path);
    const fds: number[] = [listener];
    const client = spawn(Deno.execPath(), [
      "run",
      "-A",
      "--no-config",
      "--quiet",
      `${dir}/client.ts`,
      path,
    ]);
    try {
      const conn = await accept(listener);
      fds.push(conn);
      assert.equal(getPeerCred(conn).pid, client.pid);
      const buf = new Uint8Array(4096);
      const got = await recvFds(conn, buf);
      assert.equal(got.fds.length, 1);
      const master = got.fds[0];
      fds.push(master);
      assert.match(dec.decode(buf.subarray(0, got.bytes)), /^\/dev\/pts\/\d+$/);

      let seen = "";
      while (!seen.includes("\n")) seen += dec.decode(buf.subarray(0, await readFd(master, buf)));
      assert.equal(seen, "ping\r\n");
      await writeFd(master, enc.encode("pong\n"));

      const [out, err, status] = await Promise.all([
        new Response(client.stdout).text(),
        new Response(client.stderr).text(),
        client.status,
      ]);
      assert.equal(status.code, 0, err);
      assert.equal(out.trim(), "pong");
    } finally {
      for (const fd of fds) close(fd);
      try {
        client.kill("SIGKILL");
      } catch {
        // already ended
      }
      await client.status;
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test(
  "an abstract socket connects, and recvFds reports the peer closing as 0 bytes",
  noLeaks(async () => {
    const name = `@berth-ffi-test-${Deno.pid}`;
    const listener = listenUnix(name);
    let client = -1;
    let conn = -1;
    try {
      const accepting = accept(listener);
      client = await connectUnix(name);
      conn = await accepting;
      const reading = recvFds(conn, new Uint8Array(8));
      await sleep(10);
      await writeFd(client, enc.encode("hi"));
      assert.deepEqual(await reading, { bytes: 2, fds: [] });
      close(client);
      client = -1;
      assert.deepEqual(await recvFds(conn, new Uint8Array(8)), { bytes: 0, fds: [] });
    } finally {
      for (const fd of [listener, client, conn]) if (fd >= 0) close(fd);
    }
  }),
);

Deno.test(
  "more fds than recvFds accepts is EMSGSIZE, and the ones that came are closed",
  noLeaks(async () => {
    const [a, b] = socketpair();
    const [r, w] = pipe();
    try {
      await sendFds(a, enc.encode("x"), [r, w, r]);
      await assert.rejects(recvFds(b, new Uint8Array(4), { maxFds: 1 }), {
        call: "recvmsg",
        code: "EMSGSIZE",
      });
    } finally {
      for (const fd of [a, b, r, w]) close(fd);
    }
  }),
);

Deno.test(
  "accept stops when aborted and when its listener is closed",
  noLeaks(async () => {
    const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
    const listener = listenUnix(`${dir}/l.sock`);
    try {
      const ac = new AbortController();
      const aborted = accept(listener, { signal: ac.signal });
      await sleep(10);
      ac.abort();
      await assert.rejects(aborted, { name: "AbortError" });
      const pending = accept(listener);
      await sleep(10);
      close(listener);
      await assert.rejects(pending, { call: "accept", code: "EBADF" });
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);

Deno.test(
  "socket errors name the call, the path and the errno",
  noLeaks(async () => {
    const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
    try {
      const path = `${dir}/s.sock`;
      const l = listenUnix(path);
      try {
        assert.throws(() => listenUnix(path), { call: "bind", code: "EADDRINUSE" });
      } finally {
        close(l);
      }
      await assert.rejects(connectUnix(`${dir}/missing.sock`), {
        message: `connect(${dir}/missing.sock): ENOENT (No such file or directory)`,
      });
      assert.throws(() => listenUnix(`/tmp/${"x".repeat(120)}`), {
        call: "bind",
        code: "ENAMETOOLONG",
      });
      const [a, b] = socketpair();
      try {
        await assert.rejects(sendFds(a, new Uint8Array(0), [a]), {
          call: "sendmsg",
          code: "EINVAL",
        });
      } finally {
        close(a);
        close(b);
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }),
);
