import assert from "node:assert/strict";
import { mkfifo } from "../../ffi/mod.ts";
import { nextReadSize, openProcessIO } from "./io.ts";

Deno.test("io: reads of a quiet process are small, a full read makes the next one large", () => {
  assert.equal(nextReadSize(4096, 5), 4096);
  assert.equal(nextReadSize(4096, 4096), 64 << 10);
  assert.equal(nextReadSize(64 << 10, 64 << 10), 64 << 10);
  assert.equal(nextReadSize(64 << 10, 100), 4096);
});

Deno.test("io: output copied whole through small and large reads, in order", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-io-" });
  try {
    const io = await openProcessIO(
      { stdin: "", stdout: `file://${dir}/log`, stderr: `file://${dir}/log`, terminal: false },
      "c",
      "ns",
    );
    // A short write, a pause (the next read is a quiet one), then 300 KB in one go.
    const child = new Deno.Command("/bin/sh", {
      args: ["-c", "printf start; sleep 0.2; head -c 300000 /dev/zero | tr '\\0' x; printf end"],
      stdin: "null",
      stdout: io.runtimeStdio.stdout,
      stderr: io.runtimeStdio.stderr,
    }).spawn();
    io.attach(child);
    assert.equal((await child.status).code, 0);
    await io.drained;
    await io.close();
    const text = await Deno.readTextFile(`${dir}/log`);
    assert.equal(text, "start" + "x".repeat(300000) + "end");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("io: stdin copied whole from the fifo through small and large reads", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-io-" });
  try {
    mkfifo(`${dir}/in`);
    const io = await openProcessIO(
      { stdin: `${dir}/in`, stdout: `file://${dir}/log`, stderr: "", terminal: false },
      "c",
      "ns",
    );
    const child = new Deno.Command("/bin/cat", {
      stdin: io.runtimeStdio.stdin,
      stdout: io.runtimeStdio.stdout,
      stderr: io.runtimeStdio.stderr,
    }).spawn();
    io.attach(child);
    // The client's side: a short write, a pause, then 300 KB; then EOF (CloseIO).
    const client = await Deno.open(`${dir}/in`, { write: true });
    const enc = new TextEncoder();
    await client.write(enc.encode("start"));
    await new Promise((r) => setTimeout(r, 200));
    const big = enc.encode("x".repeat(300000) + "end");
    for (let off = 0; off < big.length;) off += await client.write(big.subarray(off));
    client.close();
    io.closeStdin();
    assert.equal((await child.status).code, 0);
    await io.drained;
    await io.close();
    assert.equal(await Deno.readTextFile(`${dir}/log`), "start" + "x".repeat(300000) + "end");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
