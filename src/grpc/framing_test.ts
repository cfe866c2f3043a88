import assert from "node:assert/strict";
import { BerthError, Code } from "../errdefs/mod.ts";
import {
  decodeStatusMessage,
  encodeStatusMessage,
  formatTimeout,
  frameMessage,
  gunzipMessage,
  gzipMessage,
  MAX_STATUS_MESSAGE,
  MessageReader,
  parseTimeout,
} from "./framing.ts";

Deno.test("frameMessage writes the flag and a big-endian length", () => {
  const f = frameMessage(new Uint8Array(300).fill(7));
  assert.deepEqual([...f.subarray(0, 5)], [0, 0, 0, 1, 44]);
  assert.equal(f.length, 305);
  assert.equal(f[304], 7);
});

Deno.test("MessageReader cuts messages out of arbitrary chunks", () => {
  const a = frameMessage(new TextEncoder().encode("hello"));
  const b = frameMessage(new Uint8Array(0));
  const c = frameMessage(new Uint8Array(70000).fill(1));
  const all = new Uint8Array(a.length + b.length + c.length);
  all.set(a);
  all.set(b, a.length);
  all.set(c, a.length + b.length);
  for (const step of [1, 3, 5, 4096, all.length]) {
    const r = new MessageReader();
    const got: Uint8Array[] = [];
    for (let off = 0; off < all.length; off += step) {
      for (const m of r.push(all.slice(off, off + step))) got.push(m);
    }
    assert.equal(got.length, 3, `step ${step}`);
    assert.equal(new TextDecoder().decode(got[0]), "hello");
    assert.equal(got[1].length, 0);
    assert.equal(got[2].length, 70000);
    assert.equal(r.pending, 0);
  }
});

Deno.test("MessageReader refuses oversized messages, and compressed ones on a stream without an encoding", () => {
  const compressed = frameMessage(gzipMessage(new Uint8Array(3)), true);
  assert.throws(
    () => new MessageReader(100).push(compressed),
    (e) => e instanceof BerthError && e.code === Code.Internal,
  );
  const badFlag = frameMessage(new Uint8Array(3));
  badFlag[0] = 2;
  assert.throws(
    () => new MessageReader(100, "gzip").push(badFlag),
    (e) => e instanceof BerthError && e.code === Code.Internal,
  );
  assert.throws(
    () => new MessageReader(10).push(frameMessage(new Uint8Array(11))),
    (e) => e instanceof BerthError && e.code === Code.ResourceExhausted,
  );
});

Deno.test("MessageReader inflates gzip messages, split anywhere, mixed with plain ones", () => {
  const text = new TextEncoder().encode("compressible ".repeat(200));
  const a = frameMessage(gzipMessage(text), true);
  const b = frameMessage(new TextEncoder().encode("plain"));
  const c = frameMessage(gzipMessage(new Uint8Array(0)), true);
  const all = new Uint8Array(a.length + b.length + c.length);
  all.set(a);
  all.set(b, a.length);
  all.set(c, a.length + b.length);
  for (const step of [1, 7, all.length]) {
    const r = new MessageReader(text.length, "gzip");
    const got: Uint8Array[] = [];
    for (let off = 0; off < all.length; off += step) {
      for (const m of r.push(all.slice(off, off + step))) got.push(m);
    }
    assert.equal(got.length, 3, `step ${step}`);
    assert.deepEqual(got[0], text);
    assert.equal(new TextDecoder().decode(got[1]), "plain");
    assert.equal(got[2].length, 0);
  }
});

Deno.test("gunzip stops at the limit (a zip bomb is ResourceExhausted) and refuses corrupt input", () => {
  // 32 MiB of zeros compresses to ~32 KiB: small on the wire, over the limit inflated.
  const bomb = gzipMessage(new Uint8Array(32 << 20));
  assert.ok(bomb.length < 64 << 10);
  const exhausted = (e: unknown) => e instanceof BerthError && e.code === Code.ResourceExhausted;
  assert.throws(() => gunzipMessage(bomb, 1 << 20), exhausted);
  assert.throws(() => new MessageReader(1 << 20, "gzip").push(frameMessage(bomb, true)), exhausted);
  // Exactly the limit is allowed, one byte over is not.
  const ten = gzipMessage(new Uint8Array(10).fill(1));
  assert.equal(gunzipMessage(ten, 10).length, 10);
  assert.throws(() => gunzipMessage(ten, 9), exhausted);
  assert.throws(() => gunzipMessage(ten, 0), exhausted);
  assert.throws(
    () => gunzipMessage(new Uint8Array([0x1f, 0x8b, 8, 0, 1, 2, 3]), 100),
    (e) => e instanceof BerthError && e.code === Code.Internal,
  );
});

Deno.test("grpc-timeout parses every unit and refuses malformed values", () => {
  assert.equal(parseTimeout(undefined), undefined);
  assert.equal(parseTimeout("2H"), 7_200_000);
  assert.equal(parseTimeout("3M"), 180_000);
  assert.equal(parseTimeout("5S"), 5000);
  assert.equal(parseTimeout("250m"), 250);
  assert.equal(parseTimeout("1500u"), 1.5);
  assert.equal(parseTimeout("2000000n"), 2);
  for (const bad of ["5", "S", "123456789m", "1.5S", "-1S", "5s"]) {
    assert.throws(
      () => parseTimeout(bad),
      (e) => e instanceof BerthError && e.code === Code.InvalidArgument,
      bad,
    );
  }
  assert.equal(formatTimeout(1234.2), "1235m");
  assert.equal(parseTimeout(formatTimeout(3e9)), 3e9);
});

Deno.test("grpc-message percent-encoding round-trips and leaves plain text alone", () => {
  assert.equal(encodeStatusMessage("not found: x"), "not found: x");
  assert.equal(encodeStatusMessage("100% \n é"), "100%25 %0A %C3%A9");
  for (const s of ["", "plain", "100% \n é", "tab\there", "日本"]) {
    assert.equal(decodeStatusMessage(encodeStatusMessage(s)), s);
  }
  assert.equal(decodeStatusMessage("bad %zz escape"), "bad %zz escape");
});

Deno.test("grpc-message longer than the bound is cut at a character, never inside an escape", () => {
  const plain = "x".repeat(100_000);
  const cut = encodeStatusMessage(plain);
  assert.equal(cut.length, MAX_STATUS_MESSAGE);
  assert.ok(cut.endsWith("..."));
  for (const unit of ["é", "日", "%", "\n", "a😀"]) {
    for (const max of [MAX_STATUS_MESSAGE, 7, 10, 11, 12]) {
      const long = unit.repeat(MAX_STATUS_MESSAGE);
      const enc = encodeStatusMessage(long, max);
      assert.ok(enc.length <= max, `${unit} ${max}: ${enc.length}`);
      assert.ok(enc.endsWith("..."));
      // Every % starts a whole escape, and what it decodes to is whole characters of the original.
      assert.ok(/^(?:[^%]|%[0-9A-F]{2})*$/.test(enc), enc.slice(-12));
      const back = decodeStatusMessage(enc);
      assert.ok(!back.includes("\ufffd"), `${unit} ${max}`);
      assert.ok(long.startsWith(back.slice(0, -3)), `${unit} ${max}`);
    }
  }
  // Short messages are untouched.
  assert.equal(encodeStatusMessage("é".repeat(100)), "%C3%A9".repeat(100));
});
