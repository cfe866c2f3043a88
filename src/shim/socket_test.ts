import assert from "node:assert/strict";
import { canConnect, lockGroup, removeGroupFiles, socketDir, socketPath } from "./socket.ts";
import { groupOf } from "./start.ts";

Deno.test("socket: name is sha256 of address/namespace/group, like containerd's", async () => {
  // sha256("/run/containerd/containerd.sock/default/c1")
  const expected = Array.from(
    new Uint8Array(
      await crypto.subtle.digest(
        "SHA-256",
        new TextEncoder().encode("/run/containerd/containerd.sock/default/c1"),
      ),
    ),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
  assert.equal(
    await socketPath("/d", "/run/containerd/containerd.sock", "default", "c1"),
    `/d/${expected}`,
  );
  assert.notEqual(
    await socketPath("/d", "/a", "ns", "g1"),
    await socketPath("/d", "/a", "ns", "g2"),
  );
  assert.equal(socketDir(() => undefined), "/run/berth/s");
  assert.equal(socketDir((n) => (n === "BERTH_SHIM_SOCKET_DIR" ? "/tmp/x" : undefined)), "/tmp/x");
});

Deno.test("socket: group from annotations, in containerd's order", () => {
  assert.equal(
    groupOf({
      annotations: { "io.containerd.runc.v2.group": "g", "io.kubernetes.cri.sandbox-id": "s" },
    }, "id"),
    "g",
  );
  assert.equal(groupOf({ annotations: { "io.kubernetes.cri.sandbox-id": "s" } }, "id"), "s");
  assert.equal(groupOf({}, "id"), "id");
  assert.equal(groupOf(null, "id"), "id");
});

Deno.test("socket: canConnect and the group lock", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/sock`;
    assert.equal(await canConnect(path), false);
    const l = Deno.listen({ transport: "unix", path });
    assert.equal(await canConnect(path), true);
    const accepted = l.accept();
    (await accepted).close();
    l.close();
    const unlock = await lockGroup(path);
    let second = false;
    const waiter = lockGroup(path).then((u) => {
      second = true;
      return u;
    });
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(second, false, "a second holder waits");
    removeGroupFiles(path); // unlinks the lock file while held: the waiter must retry on the new file
    unlock();
    const unlock2 = await waiter;
    assert.equal(second, true);
    unlock2();
    removeGroupFiles(path);
    assert.deepEqual([...Deno.readDirSync(dir)], []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
