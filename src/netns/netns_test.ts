import assert from "node:assert/strict";
import { run } from "../spawn/mod.ts";
import { createNetns, netnsExists, removeNetns } from "./mod.ts";

function mountedAt(path: string): boolean {
  return Deno.readTextFileSync("/proc/self/mountinfo").split("\n").some((l) =>
    l.split(" ")[4] === path
  );
}

async function inode(path: string): Promise<number | null> {
  return (await Deno.stat(path)).ino;
}

Deno.test("createNetns pins a new, separate network namespace that removeNetns takes away", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-netns-" });
  const made: string[] = [];
  try {
    const a = await createNetns(`${dir}/netns`);
    made.push(a);
    const b = await createNetns(`${dir}/netns`);
    made.push(b);
    assert.match(a, /\/netns\/cni-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    assert.notEqual(a, b);
    assert.equal(await netnsExists(a), true);
    assert.equal(mountedAt(a), true);
    // Two namespaces, neither of them berth's own.
    const own = await inode("/proc/self/ns/net");
    assert.notEqual(await inode(a), own);
    assert.notEqual(await inode(a), await inode(b));
    // A process entering it sees only a loopback interface that is down.
    const r = await run("nsenter", [`--net=${a}`, "ip", "-o", "link", "show"]);
    assert.equal(r.success, true, new TextDecoder().decode(r.stderr));
    const links = new TextDecoder().decode(r.stdout).trim().split("\n");
    assert.equal(links.length, 1);
    assert.match(links[0], /^1: lo: <LOOPBACK>/);

    await removeNetns(a);
    assert.equal(mountedAt(a), false);
    assert.equal(await netnsExists(a), false);
    await assert.rejects(Deno.stat(a), Deno.errors.NotFound);
    await removeNetns(a); // idempotent
    assert.equal(await netnsExists(b), true);
  } finally {
    for (const p of made) await removeNetns(p);
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("netnsExists is false for a plain file and a missing path; removeNetns deletes a plain file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-netns-" });
  try {
    await Deno.writeTextFile(`${dir}/plain`, "");
    assert.equal(await netnsExists(`${dir}/plain`), false);
    assert.equal(await netnsExists(`${dir}/missing`), false);
    await removeNetns(`${dir}/plain`);
    await assert.rejects(Deno.stat(`${dir}/plain`), Deno.errors.NotFound);
    await removeNetns(`${dir}/missing`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
