import assert from "node:assert/strict";
import { devMajor, devMinor, makedev, mkfifo, mknod, NodeType } from "./fs.ts";

Deno.test("mkfifo makes a fifo with the given mode, and EEXIST the second time", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
  try {
    const path = `${dir}/stdout`;
    mkfifo(path, 0o600);
    const info = await Deno.lstat(path);
    assert.equal(info.isFifo, true);
    assert.equal(info.mode! & 0o777, 0o600);
    assert.throws(() => mkfifo(path), {
      call: "mkfifo",
      code: "EEXIST",
      message: `mkfifo(${path}): EEXIST (File exists)`,
    });
    assert.throws(() => mkfifo(`${dir}/missing/x`), { code: "ENOENT" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("makedev, devMajor and devMinor agree with Linux's dev_t layout", () => {
  assert.equal(makedev(0, 0), 0n);
  assert.equal(makedev(1, 3), 259n); // /dev/null
  assert.equal(makedev(8, 1), 2049n); // /dev/sda1
  const null_ = Deno.statSync("/dev/null");
  assert.equal(devMajor(null_.rdev!), 1);
  assert.equal(devMinor(null_.rdev!), 3);
  for (
    const [ma, mi] of [[0, 0], [4095, 255], [4096, 256], [0xfffff, 0xfffff], [
      0xffffffff,
      0xffffffff,
    ]]
  ) {
    const d = makedev(ma, mi);
    assert.equal(devMajor(d), ma);
    assert.equal(devMinor(d), mi);
  }
  assert.throws(() => makedev(-1, 0), { call: "makedev", code: "EINVAL" });
  assert.throws(() => makedev(0, 2 ** 32), { code: "EINVAL" });
  assert.throws(() => makedev(1.5, 0), { code: "EINVAL" });
});

Deno.test("mknod makes devices, fifos and files with their numbers and modes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
  const umask = Deno.umask(0);
  try {
    mknod(`${dir}/wh`, NodeType.CHAR, makedev(0, 0));
    const wh = await Deno.lstat(`${dir}/wh`);
    assert.equal(wh.isCharDevice, true);
    assert.equal(wh.rdev, 0);
    assert.equal(wh.mode! & 0o7777, 0);

    mknod(`${dir}/null`, NodeType.CHAR | 0o666, makedev(1, 3));
    const nul = await Deno.lstat(`${dir}/null`);
    assert.equal(nul.isCharDevice, true);
    assert.equal(nul.mode! & 0o7777, 0o666);
    assert.deepEqual([devMajor(nul.rdev!), devMinor(nul.rdev!)], [1, 3]);
    // A working device node: writes vanish, reads end at once.
    await Deno.writeTextFile(`${dir}/null`, "gone");
    assert.equal(await Deno.readTextFile(`${dir}/null`), "");

    // Numbers above 255/4095 use the high bits of dev_t.
    mknod(`${dir}/blk`, NodeType.BLOCK | 0o600, makedev(259, 70000));
    const blk = await Deno.lstat(`${dir}/blk`);
    assert.equal(blk.isBlockDevice, true);
    assert.deepEqual([devMajor(blk.rdev!), devMinor(blk.rdev!)], [259, 70000]);

    mknod(`${dir}/fifo`, NodeType.FIFO | 0o640);
    const fifo = await Deno.lstat(`${dir}/fifo`);
    assert.equal(fifo.isFifo, true);
    assert.equal(fifo.mode! & 0o7777, 0o640);

    mknod(`${dir}/file`, 0o4755);
    const file = await Deno.lstat(`${dir}/file`);
    assert.equal(file.isFile, true);
    assert.equal(file.size, 0);
    assert.equal(file.mode! & 0o7777, 0o4755);

    assert.throws(() => mknod(`${dir}/wh`, NodeType.CHAR, 0n), {
      message: `mknod(${dir}/wh, 0o20000, 0:0): EEXIST (File exists)`,
    });
    assert.throws(() => mknod(`${dir}/missing/x`, NodeType.FIFO), { code: "ENOENT" });
    assert.throws(() => mknod(`${dir}/bad`, 0o170000), { call: "mknod", code: "EINVAL" });
    assert.throws(() => mknod(`${dir}/bad`, 0o1000000), { code: "EINVAL" });
    assert.throws(() => mknod(`${dir}/bad`, NodeType.CHAR, -1n), { code: "EINVAL" });
  } finally {
    Deno.umask(umask);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("openFifo opens both ends without waiting; reads see data, then end of file when no writer is left", async () => {
  const { close, readFd, writeFd } = await import("./fd.ts");
  const { openFifo } = await import("./fs.ts");
  const dir = await Deno.makeTempDir({ prefix: "berth-ffi-" });
  try {
    const path = `${dir}/fifo`;
    mkfifo(path, 0o600);
    const r = openFifo(path, "read"); // no writer yet: returns at once
    const w = openFifo(path, "readwrite"); // no separate reader needed either
    const buf = new Uint8Array(16);
    const pending = readFd(r, buf); // waits on the poller, not a blocking thread
    await writeFd(w, new TextEncoder().encode("hi"));
    assert.equal(await pending, 2);
    assert.equal(new TextDecoder().decode(buf.subarray(0, 2)), "hi");
    close(w);
    assert.equal(await readFd(r, buf), 0);
    close(r);
    assert.throws(() => openFifo(`${dir}/missing`, "read"), { call: "open", code: "ENOENT" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
