import * as assert from "node:assert/strict";
import { type PooledShim, ShimPool } from "./pool.ts";

function pool(size: number, dir: string): ShimPool {
  return new ShimPool({ size, idleMs: 60_000, dir, retire: () => Promise.resolve() });
}

const record = (address: string) => ({ key: "k", namespace: "ns", address, binary: "b" });

Deno.test("ShimPool.join: containers arriving while a shim starts wait for it, up to its size", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = pool(3, dir);
    assert.equal(p.join("k"), undefined, "nothing being started: start one");
    const ticket = p.starting("k");
    const a = p.join("k");
    const b = p.join("k");
    assert.ok(a && b, "two more fit in a shim of 3");
    assert.equal(p.join("k"), undefined, "the fourth starts its own");
    assert.equal(p.join("other"), undefined, "another key never joins");
    const shim = await p.add(record("/s/1"));
    ticket.done(shim);
    assert.equal(await a, shim);
    assert.equal(await b, shim);
    assert.equal(shim.tasks, 3, "the starter and both waiters hold a place");
    assert.equal(p.take("k"), undefined, "full");
    assert.equal(p.join("k"), undefined, "the start is over: nothing to join");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ShimPool.join: a failed start sends its waiters to start their own", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = pool(4, dir);
    const ticket = p.starting("k");
    const waiting = p.join("k")!;
    ticket.done(undefined);
    ticket.done(undefined); // reported twice (the finally after a failure): harmless
    assert.equal(await waiting, undefined);
    assert.equal(p.all().length, 0);
    // A second start after a success reported twice keeps the places counted once.
    const t2 = p.starting("k");
    const w2 = p.join("k")!;
    const shim: PooledShim = await p.add(record("/s/2"));
    t2.done(shim);
    t2.done(undefined);
    assert.equal(await w2, shim);
    assert.equal(shim.tasks, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ShimPool.claim: a shim with room, else a place in one starting, else a ticket", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const p = pool(2, dir);
    const first = p.claim("k");
    assert.ok("ticket" in first, "an empty pool: start one");
    const second = p.claim("k");
    assert.ok("waiting" in second, "the next waits for it");
    const third = p.claim("k");
    assert.ok("ticket" in third, "that one is full: start another");
    const shim = await p.add(record("/s/3"));
    first.ticket.done(shim);
    assert.equal(await second.waiting, shim);
    third.ticket.done(undefined);
    const fourth = p.claim("k");
    assert.ok("ticket" in fourth, "no room anywhere");
    fourth.ticket.done(undefined);
    p.release(shim);
    const fifth = p.claim("k");
    assert.ok("shim" in fifth && fifth.shim === shim, "a freed place is taken");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
