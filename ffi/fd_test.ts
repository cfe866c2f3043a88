import assert from "node:assert/strict";
import { close, isNonblocking, pipe, readFd, setNonblocking, writeFd } from "./fd.ts";
import { noLeaks, sleep } from "./testing.ts";

const enc = new TextEncoder();
const dec = new TextDecoder();

Deno.test(
  "readFd waits for data without blocking the event loop, then sees end of file",
  noLeaks(async () => {
    const [r, w] = pipe();
    let writerOpen = true;
    try {
      const buf = new Uint8Array(16);
      const read = readFd(r, buf);
      // Timers still fire while the read waits: the event loop is free.
      const first = await Promise.race([read.then(() => "read"), sleep(30).then(() => "timer")]);
      assert.equal(first, "timer");
      await writeFd(w, enc.encode("hello"));
      const n = await read;
      assert.equal(dec.decode(buf.subarray(0, n)), "hello");
      close(w);
      writerOpen = false;
      assert.equal(await readFd(r, buf), 0);
    } finally {
      close(r);
      if (writerOpen) close(w);
    }
  }),
);

Deno.test(
  "writeFd pushes a megabyte through a 64 KiB pipe as the reader drains it",
  noLeaks(async () => {
    const [r, w] = pipe();
    try {
      const data = new Uint8Array(1 << 20).map((_, i) => i % 251);
      const writing = writeFd(w, data).then(() => close(w));
      const got = new Uint8Array(data.length);
      let off = 0;
      for (;;) {
        const n = await readFd(r, got.subarray(off));
        if (n === 0) break;
        off += n;
      }
      await writing;
      assert.equal(off, data.length);
      assert.deepEqual(got, data);
    } finally {
      close(r);
    }
  }),
);

Deno.test(
  "writing to a pipe whose reader is gone fails with EPIPE",
  noLeaks(async () => {
    const [r, w] = pipe();
    close(r);
    try {
      await assert.rejects(writeFd(w, enc.encode("x")), { call: "write", code: "EPIPE" });
    } finally {
      close(w);
    }
  }),
);

Deno.test(
  "a blocking fd is read only once it is readable",
  noLeaks(async () => {
    const [r, w] = pipe();
    try {
      setNonblocking(r, false);
      assert.equal(isNonblocking(r), false);
      const buf = new Uint8Array(8);
      const read = readFd(r, buf);
      await sleep(20); // a blocking read here would freeze this test
      await writeFd(w, enc.encode("ok"));
      assert.equal(dec.decode(buf.subarray(0, await read)), "ok");
      setNonblocking(r);
      assert.equal(isNonblocking(r), true);
    } finally {
      close(r);
      close(w);
    }
  }),
);

Deno.test(
  "a read stops when aborted and when its fd is closed",
  noLeaks(async () => {
    const [r, w] = pipe();
    try {
      const ac = new AbortController();
      const aborted = readFd(r, new Uint8Array(4), { signal: ac.signal });
      ac.abort();
      await assert.rejects(aborted, { name: "AbortError" });
      const pending = readFd(r, new Uint8Array(4));
      await sleep(10);
      close(r);
      await assert.rejects(pending, { call: "read", code: "EBADF" });
    } finally {
      close(w);
    }
  }),
);

Deno.test("closing a bad fd names the call and errno", () => {
  assert.throws(() => close(-1), {
    name: "SyscallError",
    call: "close",
    errno: 9,
    code: "EBADF",
    message: "close(-1): EBADF (Bad file descriptor)",
  });
});
