import assert from "node:assert/strict";
import { parseShimFlags } from "./flags.ts";
import { adoptSpare, sparePath } from "./spare.ts";

// A stand-in spare on `path`: greets, takes one adoption, says ok; then stops.
function fakeSpare(path: string): () => Promise<void> {
  const listener = Deno.listen({ transport: "unix", path });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.write(new TextEncoder().encode("pid 999999\n"));
    const buf = new Uint8Array(4096);
    let got = "";
    while (!got.includes("\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      got += new TextDecoder().decode(buf.subarray(0, n));
    }
    await conn.write(new TextEncoder().encode("ok\n"));
    conn.close();
  })();
  return async () => {
    await served;
    listener.close();
  };
}

Deno.test("spare: two starts racing for one spare, one adopts it, and only the spare's own lock file stays", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-spare-" });
  try {
    const stop = await fakeSpare(sparePath(dir));
    const flags = (id: string) =>
      parseShimFlags([
        "-namespace",
        "ns",
        "-address",
        "/run/ctd.sock",
        "-id",
        id,
        "-bundle",
        dir,
        "start",
      ]);
    const pids = await Promise.all([
      adoptSpare(dir, `${dir}/g1`, flags("c1")),
      adoptSpare(dir, `${dir}/g2`, flags("c2")),
    ]);
    await stop();
    assert.deepEqual(pids.toSorted(), [0, 999999]);
    const left = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    // The adopted spare now answers at its group's socket; beside it only the
    // spare's lock, which stays with the directory (no group lock, no stray file).
    assert.equal(left.length, 2, left.join(", "));
    assert.ok(left[0] === "g1" || left[0] === "g2", left[0]);
    assert.equal(left[1], "spare.lock");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
