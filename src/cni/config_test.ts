import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { loadNetwork, NotInitializedError, parseNetwork } from "./config.ts";
import { pluginStdin } from "./exec.ts";
import { summarize } from "./result.ts";

Deno.test("loadNetwork takes the lexically first config file and wraps a single .conf", async () => {
  const dir = await Deno.makeTempDir({ prefix: "berth-cni-conf-" });
  try {
    await assert.rejects(loadNetwork(`${dir}/missing`), (e) => {
      assert.ok(e instanceof NotInitializedError);
      assert.equal(e.code, Code.FailedPrecondition);
      assert.equal(
        e.message,
        `cni plugin not initialized: no network config found in ${dir}/missing`,
      );
      return true;
    });
    await Deno.writeTextFile(`${dir}/README`, "not a config");
    await assert.rejects(loadNetwork(dir), /no network config found in/);

    await Deno.writeTextFile(
      `${dir}/20-b.conflist`,
      JSON.stringify({
        cniVersion: "1.0.0",
        name: "b",
        disableCheck: true,
        plugins: [{ type: "bridge", bridge: "x" }, {
          type: "portmap",
          capabilities: { portMappings: true },
        }],
      }),
    );
    let net = await loadNetwork(dir);
    assert.equal(net.name, "b");
    assert.equal(net.disableCheck, true);
    assert.deepEqual(net.plugins.map((p) => p.type), ["bridge", "portmap"]);
    assert.equal(net.source, `${dir}/20-b.conflist`);

    await Deno.writeTextFile(
      `${dir}/10-a.conf`,
      JSON.stringify({ cniVersion: "0.4.0", name: "a", type: "ptp", ipMasq: true }),
    );
    net = await loadNetwork(dir);
    assert.equal(net.name, "a");
    assert.equal(net.cniVersion, "0.4.0");
    assert.equal(net.disableCheck, false);
    assert.deepEqual(net.plugins, [{ cniVersion: "0.4.0", name: "a", type: "ptp", ipMasq: true }]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("parseNetwork refuses malformed configs with InvalidArgument naming the file and field", () => {
  const bad: [unknown, RegExp][] = [
    ["{", /cni\.conf: invalid JSON/],
    [[], /not a JSON object/],
    [{ cniVersion: "1.0.0", plugins: [{ type: "bridge" }] }, /"name" must be/],
    [{ name: "n/x", cniVersion: "1.0.0", type: "bridge" }, /"name" must be/],
    [{ name: "n", plugins: [{ type: "bridge" }] }, /"cniVersion" must be a version/],
    [{ name: "n", cniVersion: "1.0.0", plugins: [] }, /"plugins" must be a non-empty array/],
    [{ name: "n", cniVersion: "1.0.0", plugins: [{}] }, /plugin 0: "type" must name/],
    [{ name: "n", cniVersion: "1.0.0", plugins: [{ type: "../sh" }] }, /"type" must name/],
    [{ name: "n", cniVersion: "1.0.0", plugins: [3] }, /plugin 0 is not a JSON object/],
    [
      { name: "n", cniVersion: "1.0.0", disableCheck: "yes", plugins: [{ type: "a" }] },
      /"disableCheck" must be true or false/,
    ],
    [
      { name: "n", cniVersion: "1.0.0", plugins: [{ type: "a", capabilities: [] }] },
      /"capabilities" must be an object/,
    ],
  ];
  for (const [doc, re] of bad) {
    const text = typeof doc === "string" ? doc : JSON.stringify(doc);
    assert.throws(() => parseNetwork(text, "/etc/cni/net.d/cni.conf"), (e) => {
      assert.ok(isCode(e, Code.InvalidArgument), String(e));
      assert.match((e as Error).message, /^network config \/etc\/cni\/net\.d\/cni\.conf: /);
      assert.match((e as Error).message, re);
      return true;
    });
  }
});

Deno.test("pluginStdin sets name, version, prevResult and only the declared capabilities", () => {
  const list = parseNetwork(JSON.stringify({
    cniVersion: "1.0.0",
    name: "net1",
    plugins: [
      { type: "bridge", name: "ignored", prevResult: { stale: true } },
      { type: "portmap", capabilities: { portMappings: true, bandwidth: false }, snat: true },
    ],
  }));
  const caps = {
    portMappings: [{ hostPort: 80, containerPort: 8080, protocol: "tcp" }],
    bandwidth: {},
  };
  assert.deepEqual(pluginStdin(list, list.plugins[0], caps, undefined), {
    type: "bridge",
    name: "net1",
    cniVersion: "1.0.0",
  });
  const prev = { cniVersion: "1.0.0", ips: [] };
  assert.deepEqual(pluginStdin(list, list.plugins[1], caps, prev), {
    type: "portmap",
    capabilities: { portMappings: true, bandwidth: false },
    snat: true,
    name: "net1",
    cniVersion: "1.0.0",
    prevResult: prev,
    runtimeConfig: { portMappings: caps.portMappings },
  });
  // No mappings given: no runtimeConfig at all.
  assert.equal("runtimeConfig" in pluginStdin(list, list.plugins[1], {}, prev), false);
});

Deno.test("summarize reads addresses from 1.0.0 and 0.2.0 results", () => {
  assert.deepEqual(
    summarize({
      cniVersion: "1.0.0",
      interfaces: [{ name: "cni0", mac: "aa" }, { name: "eth0", mac: "bb", sandbox: "/ns" }],
      ips: [
        { address: "10.1.0.5/24", gateway: "10.1.0.1", interface: 1 },
        { address: "fd00::5/64", interface: 1 },
      ],
    }),
    {
      interfaces: [{ name: "cni0", mac: "aa", sandbox: undefined }, {
        name: "eth0",
        mac: "bb",
        sandbox: "/ns",
      }],
      ips: [
        { address: "10.1.0.5/24", gateway: "10.1.0.1", version: 4, interface: "eth0" },
        { address: "fd00::5/64", version: 6, interface: "eth0" },
      ],
    },
  );
  assert.deepEqual(
    summarize({ cniVersion: "0.2.0", ip4: { ip: "10.2.0.3/16", gateway: "10.2.0.1" } }),
    { interfaces: [], ips: [{ address: "10.2.0.3/16", gateway: "10.2.0.1", version: 4 }] },
  );
  assert.deepEqual(summarize(undefined), { ips: [], interfaces: [] });
});
