import assert from "node:assert/strict";
import { parseShimFlags } from "./flags.ts";
import { socketPath } from "./socket.ts";
import { shimCgroupOf, startShim } from "./start.ts";
import { packEvent } from "../events/mod.ts";
import { toBinary } from "@bufbuild/protobuf";
import { AnySchema } from "@bufbuild/protobuf/wkt";
import { OptionsSchema } from "../gen/containerd/runc/v1/options_pb.ts";
import { processesMentioning } from "../../tests/support/proc.ts";

Deno.test({
  name: "start: a group whose shim is up gets its address, with no new process",
  // start reads (and ignores) stdin, as containerd writes options there.
  sanitizeResources: false,
  fn: async () => {
    const dir = await Deno.makeTempDir();
    const before = Deno.env.get("BERTH_SHIM_SOCKET_DIR");
    Deno.env.set("BERTH_SHIM_SOCKET_DIR", `${dir}/s`);
    try {
      await Deno.mkdir(`${dir}/s`);
      await Deno.mkdir(`${dir}/b`);
      await Deno.writeTextFile(
        `${dir}/b/config.json`,
        JSON.stringify({ annotations: { "io.containerd.runc.v2.group": "g1" } }),
      );
      const path = await socketPath(`${dir}/s`, "/run/ctd.sock", "ns", "g1");
      const listener = Deno.listen({ transport: "unix", path });
      const accepting = (async () => {
        for await (const c of listener) c.close();
      })();
      const flags = parseShimFlags([
        "-namespace",
        "ns",
        "-address",
        "/run/ctd.sock",
        "-id",
        "c9",
        "-bundle",
        `${dir}/b`,
        "start",
      ]);
      const address = await startShim(flags);
      assert.equal(address, `unix://${path}`);
      assert.equal(await Deno.readTextFile(`${dir}/b/address`), address);
      assert.deepEqual(processesMentioning(`${dir}/s`), [], "no serve process was started");
      listener.close();
      await accepting;
      await assert.rejects(startShim({ ...flags, namespace: "" }), /namespace/);
    } finally {
      if (before === undefined) Deno.env.delete("BERTH_SHIM_SOCKET_DIR");
      else Deno.env.set("BERTH_SHIM_SOCKET_DIR", before);
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("start: ShimCgroup is read from the options Any containerd writes on stdin", () => {
  const any = packEvent(OptionsSchema, {
    binaryName: "crun",
    shimCgroup: "/pods/shim",
    systemdCgroup: true,
    ioUid: 1000,
  });
  assert.equal(shimCgroupOf(toBinary(AnySchema, any)), "/pods/shim");
  assert.equal(shimCgroupOf(toBinary(AnySchema, packEvent(OptionsSchema, { root: "/r" }))), "");
  assert.equal(shimCgroupOf(new Uint8Array()), "");
  assert.equal(shimCgroupOf(new Uint8Array([0xff, 0xff])), "");
});
