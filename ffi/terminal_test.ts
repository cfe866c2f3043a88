import assert from "node:assert/strict";
import { isErrno } from "./errno.ts";
import { close, pipe, readFd, writeFd } from "./fd.ts";
import { getWinsize, makeRaw, openPty, restoreTermios, setWinsize, tcgetattr } from "./terminal.ts";
import { noLeaks } from "./testing.ts";

const ICANON = 0o2;
const ECHO = 0o10;
const ISIG = 0o1;
const OPOST = 0o1;
const dec = new TextDecoder();

Deno.test(
  "a pty's window size set through ioctl reads back on both sides",
  noLeaks(() => {
    const pty = openPty();
    try {
      assert.match(pty.path, /^\/dev\/pts\/\d+$/);
      setWinsize(pty.master, { rows: 41, cols: 132 });
      assert.deepEqual(getWinsize(pty.slave), { rows: 41, cols: 132, xPixels: 0, yPixels: 0 });
      setWinsize(pty.slave, { rows: 24, cols: 80, xPixels: 640, yPixels: 480 });
      assert.deepEqual(getWinsize(pty.master), { rows: 24, cols: 80, xPixels: 640, yPixels: 480 });
      assert.throws(() => setWinsize(pty.master, { rows: -1, cols: 80 }), { code: "EINVAL" });
    } finally {
      close(pty.master);
      close(pty.slave);
    }
  }),
);

Deno.test(
  "raw mode switches off line editing and echo, and restores exactly",
  noLeaks(() => {
    const pty = openPty();
    try {
      const before = tcgetattr(pty.slave);
      assert.ok(before.lflag & ICANON && before.lflag & ECHO, "a new pty starts cooked");
      const saved = makeRaw(pty.slave);
      assert.deepEqual(saved, before);
      const raw = tcgetattr(pty.slave);
      assert.equal(raw.lflag & (ICANON | ECHO | ISIG), 0);
      assert.equal(raw.oflag & OPOST, 0);
      restoreTermios(pty.slave, saved);
      assert.deepEqual(tcgetattr(pty.slave), before);
    } finally {
      close(pty.master);
      close(pty.slave);
    }
  }),
);

Deno.test(
  "bytes flow both ways through a pty, and its master reads EIO once the slave is closed",
  noLeaks(async () => {
    const pty = openPty();
    let slaveOpen = true;
    try {
      const buf = new Uint8Array(64);
      await writeFd(pty.slave, new TextEncoder().encode("out\n"));
      assert.equal(dec.decode(buf.subarray(0, await readFd(pty.master, buf))), "out\r\n");
      await writeFd(pty.master, new TextEncoder().encode("in\n"));
      assert.equal(dec.decode(buf.subarray(0, await readFd(pty.slave, buf))), "in\n");
      close(pty.slave);
      slaveOpen = false;
      // What is left (the echo of "in") comes first, then EIO.
      let echoed = "";
      const eio = await (async () => {
        for (let i = 0; i < 10; i++) {
          try {
            echoed += dec.decode(buf.subarray(0, await readFd(pty.master, buf)));
          } catch (err) {
            return err;
          }
        }
      })();
      assert.equal(echoed, "in\r\n");
      assert.ok(isErrno(eio, "EIO"), String(eio));
    } finally {
      close(pty.master);
      if (slaveOpen) close(pty.slave);
    }
  }),
);

Deno.test(
  "terminal calls on a pipe fail with ENOTTY",
  noLeaks(() => {
    const [r, w] = pipe();
    try {
      assert.throws(() => tcgetattr(r), { call: "tcgetattr", code: "ENOTTY" });
      assert.throws(() => getWinsize(r), { call: "ioctl", code: "ENOTTY" });
    } finally {
      close(r);
      close(w);
    }
  }),
);
