// CniManager against Debian's real plugins (/usr/lib/cni: bridge, host-local,
// loopback, portmap) in network namespaces these tests make. Each run uses a
// bridge name and a 10.201.x.0/24 subnet of its own, keeps host-local's data
// and berth's state in a temp dir, and removes its namespaces and bridge.

import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { createNetns, netnsExists, removeNetns } from "../netns/mod.ts";
import { run, spawn } from "../spawn/mod.ts";
import { CniManager, type CniManagerOptions } from "./mod.ts";

const BIN_DIRS = ["/usr/lib/cni"];
const decoder = new TextDecoder();

function hex(bytes: number): string {
  return Array.from(
    crypto.getRandomValues(new Uint8Array(bytes)),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

async function sh(cmd: string, args: string[]): Promise<string> {
  const r = await run(cmd, args);
  if (!r.success) {
    throw new Error(`${cmd} ${args.join(" ")}: ${decoder.decode(r.stderr).trim()}`);
  }
  return decoder.decode(r.stdout);
}

/** A third octet no route of this machine uses yet. */
async function freeSubnet(): Promise<string> {
  const routes = await sh("ip", ["-4", "route", "show"]);
  for (;;) {
    const x = 1 + Math.floor(Math.random() * 254);
    if (!routes.includes(`10.201.${x}.`)) return `10.201.${x}`;
  }
}

interface Fixture {
  dir: string;
  confDir: string;
  stateDir: string;
  ipamDir: string;
  bridge: string;
  net: string;
  /** The first three octets of the subnet, e.g. "10.201.7". */
  prefix: string;
  conflist: Record<string, unknown>;
  newNetns(): Promise<string>;
  manager(opts?: Partial<CniManagerOptions>): CniManager;
}

/** Runs `fn` with a fresh network setup, and removes all of it afterwards. */
async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "berth-cni-" });
  const id = hex(4);
  const prefix = await freeSubnet();
  const netnses: string[] = [];
  const f: Fixture = {
    dir,
    confDir: `${dir}/net.d`,
    stateDir: `${dir}/state/cni`,
    ipamDir: `${dir}/ipam`,
    bridge: `bcni${id}`,
    net: `berth-test-${id}`,
    prefix,
    conflist: {},
    async newNetns() {
      const p = await createNetns(`${dir}/netns`);
      netnses.push(p);
      return p;
    },
    manager(opts = {}) {
      return new CniManager({
        binDirs: BIN_DIRS,
        confDir: f.confDir,
        stateDir: f.stateDir,
        timeoutMs: 20_000,
        ...opts,
      });
    },
  };
  f.conflist = {
    cniVersion: "1.0.0",
    name: f.net,
    plugins: [
      {
        type: "bridge",
        bridge: f.bridge,
        isGateway: true,
        ipMasq: false,
        hairpinMode: true,
        ipam: {
          type: "host-local",
          ranges: [[{ subnet: `${prefix}.0/24` }]],
          routes: [{ dst: "0.0.0.0/0" }],
          dataDir: f.ipamDir,
        },
      },
      { type: "portmap", capabilities: { portMappings: true }, snat: true },
    ],
  };
  await Deno.mkdir(f.confDir, { recursive: true });
  try {
    await fn(f);
  } finally {
    for (const p of netnses) await removeNetns(p);
    await run("ip", ["link", "del", f.bridge]); // absent when no ADD got that far
    await Deno.remove(dir, { recursive: true });
  }
}

async function writeConflist(f: Fixture, name = "10-test.conflist"): Promise<void> {
  await Deno.writeTextFile(`${f.confDir}/${name}`, JSON.stringify(f.conflist));
}

/** The host-local allocation files of the test network (one per address). */
async function allocations(f: Fixture): Promise<string[]> {
  const out: string[] = [];
  try {
    for await (const e of Deno.readDir(`${f.ipamDir}/${f.net}`)) {
      if (e.name.startsWith(f.prefix)) out.push(e.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return out.sort();
}

function ipOf(cidr: string): string {
  return cidr.split("/")[0];
}

/** One ping from inside `netns` to `ip`, or an error saying it went unanswered. */
async function ping(netns: string, ip: string): Promise<void> {
  await sh("nsenter", [`--net=${netns}`, "busybox", "ping", "-c", "1", "-W", "3", ip]);
}

async function exists(path: string): Promise<boolean> {
  return await Deno.stat(path).then(() => true, () => false);
}

Deno.test("status follows the config directory: none, a conflist, a broken file that sorts first", async () => {
  await withFixture(async (f) => {
    const cni = f.manager();
    assert.deepEqual(await cni.status(), {
      ready: false,
      reason: `cni plugin not initialized: no network config found in ${f.confDir}`,
    });
    await writeConflist(f);
    assert.deepEqual(await cni.status(), { ready: true });
    await Deno.writeTextFile(`${f.confDir}/05-broken.conf`, "{ not json");
    const s = await cni.status();
    assert.equal(s.ready, false);
    assert.match(s.reason ?? "", /05-broken\.conf: invalid JSON/);
    await Deno.remove(`${f.confDir}/05-broken.conf`);
    assert.deepEqual(await cni.status(), { ready: true });
    // setup without a network says so, with containerd's words.
    await Deno.remove(`${f.confDir}/10-test.conflist`);
    const ns = await f.newNetns();
    await assert.rejects(
      cni.setup("pod0", ns, { podName: "p", podNamespace: "default" }),
      (e) => isCode(e, Code.FailedPrecondition) && /cni plugin not initialized/.test(String(e)),
    );
    assert.equal(await exists(`${f.stateDir}/pod0.json`), false);
  });
});

Deno.test("two pods get addresses on one bridge, reach each other, and DEL frees them (twice is fine)", async () => {
  await withFixture(async (f) => {
    await writeConflist(f);
    const cni = f.manager();
    const nsA = await f.newNetns();
    const nsB = await f.newNetns();
    const a = await cni.setup("podA", nsA, { podName: "a", podNamespace: "ns1" });
    const b = await cni.setup("podB", nsB, { podName: "b", podNamespace: "ns1", podUid: "u-1" });

    assert.equal(a.ips.length, 1);
    assert.equal(a.ips[0].version, 4);
    assert.equal(a.ips[0].interface, "eth0");
    assert.equal(a.ips[0].gateway, `${f.prefix}.1`);
    assert.match(a.ips[0].address, new RegExp(`^${f.prefix.replaceAll(".", "\\.")}\\.\\d+/24$`));
    assert.notEqual(a.ips[0].address, b.ips[0].address);
    assert.ok(a.interfaces.some((i) => i.name === "eth0" && i.sandbox === nsA));
    assert.equal((a.raw as { cniVersion: string }).cniVersion, "1.0.0");
    assert.deepEqual(await allocations(f), [ipOf(a.ips[0].address), ipOf(b.ips[0].address)].sort());

    // loopback is up in the pod, and eth0 has the address the result says.
    const lo = await sh("nsenter", [`--net=${nsA}`, "ip", "-o", "link", "show", "lo"]);
    assert.match(lo, /<LOOPBACK,UP,LOWER_UP>/);
    const addr = await sh("nsenter", [`--net=${nsA}`, "ip", "-o", "-4", "addr", "show", "eth0"]);
    assert.ok(addr.includes(a.ips[0].address), addr);
    await ping(nsA, "127.0.0.1");
    // Pod to pod, across the bridge.
    await ping(nsA, ipOf(b.ips[0].address));
    await ping(nsB, ipOf(a.ips[0].address));

    // What ADD used is saved, with the CNI_ARGS containerd sends.
    const saved = JSON.parse(await Deno.readTextFile(`${f.stateDir}/podB.json`));
    assert.deepEqual(saved.args, [
      ["K8S_POD_NAMESPACE", "ns1"],
      ["K8S_POD_NAME", "b"],
      ["K8S_POD_INFRA_CONTAINER_ID", "podB"],
      ["K8S_POD_UID", "u-1"],
      ["IgnoreUnknown", "1"],
    ]);
    assert.deepEqual(saved.attachments.map((x: { ifname: string }) => x.ifname), ["lo", "eth0"]);

    await cni.check("podA", nsA);
    await assert.rejects(
      cni.setup("podA", nsA, { podName: "a", podNamespace: "ns1" }),
      (e) => isCode(e, Code.AlreadyExists),
    );

    await cni.teardown("podA", nsA);
    assert.deepEqual(await allocations(f), [ipOf(b.ips[0].address)]);
    assert.equal(await exists(`${f.stateDir}/podA.json`), false);
    const links = await sh("nsenter", [`--net=${nsA}`, "ip", "-o", "link", "show"]);
    assert.equal(links.includes("eth0"), false, links);
    await cni.teardown("podA", nsA); // again: nothing left to do, no error
    await cni.teardown("never-set-up", undefined);
    await assert.rejects(cni.check("podA", nsA), (e) => isCode(e, Code.NotFound));

    await cni.teardown("podB", nsB);
    assert.deepEqual(await allocations(f), []);
  });
});

Deno.test("DEL after a crash replays the saved config though conf_dir changed, and works without the netns", async () => {
  await withFixture(async (f) => {
    await writeConflist(f);
    const ns1 = await f.newNetns();
    const ns2 = await f.newNetns();
    const before = f.manager();
    const r1 = await before.setup("pod1", ns1, { podName: "p1", podNamespace: "default" });
    await before.setup("pod2", ns2, { podName: "p2", podNamespace: "default" });
    assert.equal((await allocations(f)).length, 2);

    // The "crash": a new manager, and the network config is gone meanwhile.
    await Deno.remove(`${f.confDir}/10-test.conflist`);
    const after = f.manager();
    assert.equal((await after.status()).ready, false);
    await after.teardown("pod1", ns1);
    assert.equal((await allocations(f)).includes(ipOf(r1.ips[0].address)), false);

    // The netns went first (a reboot, or a removed sandbox): DEL still frees the address.
    await removeNetns(ns2);
    assert.equal(await netnsExists(ns2), false);
    await after.teardown("pod2", ns2);
    assert.deepEqual(await allocations(f), []);
    assert.equal(await exists(`${f.stateDir}/pod2.json`), false);
  });
});

Deno.test("a setup that dies in the middle of ADD has saved what a new manager's DEL needs", async () => {
  await withFixture(async (f) => {
    // A chained plugin whose ADD never answers: bridge has allocated an address by then.
    const bin = `${f.dir}/bin`;
    await Deno.mkdir(bin);
    await Deno.writeTextFile(
      `${bin}/stall`,
      `#!/bin/sh\ncat >/dev/null\n[ "$CNI_COMMAND" = ADD ] || exit 0\necho $$ > ${bin}/stall.pid\nexec sleep 30\n`,
      { mode: 0o755 },
    );
    (f.conflist.plugins as unknown[]).push({ type: "stall" });
    await writeConflist(f);
    const ns = await f.newNetns();
    const dying = f.manager({ binDirs: [bin, ...BIN_DIRS], timeoutMs: 15_000 });
    const pending = dying.setup("podx", ns, { podName: "x", podNamespace: "d" });
    const settled = pending.then(() => "resolved", (e) => String(e));
    while (!await exists(`${bin}/stall.pid`)) await new Promise((ok) => setTimeout(ok, 50));
    assert.equal((await allocations(f)).length, 1);
    assert.equal(await exists(`${f.stateDir}/podx.json`), true);

    // The daemon "crashed" here; the one that replaces it tears the pod down.
    await f.manager({ binDirs: [bin, ...BIN_DIRS] }).teardown("podx", ns);
    assert.deepEqual(await allocations(f), []);
    assert.equal(await exists(`${f.stateDir}/podx.json`), false);
    // End the stalled plugin (exactly that pid); the old setup fails and finds nothing left to do.
    Deno.kill(Number(await Deno.readTextFile(`${bin}/stall.pid`)), "SIGKILL");
    assert.match(await settled, /plugin type="stall" failed \(add\)/);
  });
});

Deno.test("a plugin's error JSON becomes a clear error and a failed setup leaves nothing behind", async () => {
  await withFixture(async (f) => {
    const plugins = f.conflist.plugins as Record<string, unknown>[];
    (plugins[0].ipam as Record<string, unknown>).ranges = [[{ subnet: "10.201.0.0/99" }]];
    await writeConflist(f);
    const cni = f.manager();
    const ns = await f.newNetns();
    await assert.rejects(cni.setup("bad1", ns, { podName: "p", podNamespace: "d" }), (e) => {
      // host-local's own message, as bridge (which ran it) reported it.
      assert.match(String(e), /plugin type="bridge" failed \(add\): .*10\.201\.0\.0\/99/);
      return true;
    });
    assert.equal(await exists(`${f.stateDir}/bad1.json`), false);

    // A plugin that is not installed.
    f.conflist.plugins = [{ type: "no-such-plugin-berth" }];
    await writeConflist(f);
    await assert.rejects(
      cni.setup("bad2", ns, { podName: "p", podNamespace: "d" }),
      (e) =>
        isCode(e, Code.NotFound) &&
        (e as Error).message ===
          `failed to find plugin "no-such-plugin-berth" in path [/usr/lib/cni]`,
    );
    assert.equal(await exists(`${f.stateDir}/bad2.json`), false);
    await assert.rejects(
      cni.setup("bad4", ns, { podName: "p;K8S_POD_NAME=q", podNamespace: "d" }),
      (e) => isCode(e, Code.InvalidArgument) && /K8S_POD_NAME .* has ';' or '='/.test(String(e)),
    );
    await assert.rejects(
      cni.setup("bad3", `${f.dir}/not-a-netns`, { podName: "p", podNamespace: "d" }),
      (e) => isCode(e, Code.InvalidArgument) && /is not a network namespace/.test(String(e)),
    );
  });
});

Deno.test("CHECK notices a pod interface that went missing", async () => {
  await withFixture(async (f) => {
    await writeConflist(f);
    const cni = f.manager();
    const ns = await f.newNetns();
    await cni.setup("podc", ns, { podName: "c", podNamespace: "d" });
    await cni.check("podc", ns);
    await sh("nsenter", [`--net=${ns}`, "ip", "link", "del", "eth0"]);
    await assert.rejects(cni.check("podc", ns), /plugin type="bridge" failed \(check\)/);
    await cni.teardown("podc", ns);
    assert.deepEqual(await allocations(f), []);
  });
});

/** A free TCP port on the host (bound once and released). */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function fetchText(url: string): Promise<string> {
  const ctl = new AbortController();
  const t = setTimeout(() => ctl.abort(), 5000);
  try {
    const r = await fetch(url, { signal: ctl.signal });
    return await r.text();
  } finally {
    clearTimeout(t);
  }
}

/** True when the nat table has chain `name`. */
async function natChainExists(name: string): Promise<boolean> {
  return (await run("iptables", ["-w", "-t", "nat", "-S", name])).success;
}

/**
 * Takes away portmap's shared top-level chains and the jumps to them, when
 * this test made them and no pod (of anyone's) has a rule in them any more:
 * DEL removes a pod's own chains, never these.
 */
async function removePortmapChains(): Promise<void> {
  const dnat = await run("iptables", ["-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT"]);
  if (!dnat.success || decoder.decode(dnat.stdout).trim() !== "-N CNI-HOSTPORT-DNAT") return;
  const jumps = [
    ["PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"],
    ["OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT"],
    [
      "POSTROUTING",
      "-m",
      "comment",
      "--comment",
      "CNI portfwd requiring masquerade",
      "-j",
      "CNI-HOSTPORT-MASQ",
    ],
  ];
  for (const rule of jumps) await run("iptables", ["-w", "-t", "nat", "-D", ...rule]);
  for (const chain of ["CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"]) {
    await run("iptables", ["-w", "-t", "nat", "-F", chain]);
    await run("iptables", ["-w", "-t", "nat", "-X", chain]);
  }
}

Deno.test("portmap forwards a host port to the pod, on 127.0.0.1 and on the bridge address; DEL removes its rules", async () => {
  const hadChains = await natChainExists("CNI-HOSTPORT-DNAT");
  await withFixture(async (f) => {
    await writeConflist(f);
    const cni = f.manager();
    const ns = await f.newNetns();
    const hostPort = freePort();
    const r = await cni.setup("podp", ns, {
      podName: "p",
      podNamespace: "d",
      portMappings: [
        { hostPort, containerPort: 8080, protocol: "tcp" },
        { hostPort: 0, containerPort: 9090, protocol: "tcp" }, // not published, as containerd skips it
      ],
    });
    const podIp = ipOf(r.ips[0].address);
    await Deno.mkdir(`${f.dir}/www`);
    await Deno.writeTextFile(`${f.dir}/www/hello.txt`, `hello from ${podIp}\n`);
    const server = spawn("nsenter", [
      `--net=${ns}`,
      "busybox",
      "httpd",
      "-f",
      "-p",
      `${podIp}:8080`,
      "-h",
      `${f.dir}/www`,
    ], { stdout: "null", stderr: "null" });
    try {
      const nat = await sh("iptables", ["-w", "-t", "nat", "-S"]);
      assert.ok(nat.includes(`--dport ${hostPort}`), "a DNAT rule for the host port");
      assert.equal(nat.includes("--dport 9090"), false);
      // httpd binds in the background: the first request may come too soon.
      let body = "";
      for (let i = 0; i < 50 && !body; i++) {
        body = await fetchText(`http://${podIp}:8080/hello.txt`).catch(() => "");
        if (!body) await new Promise((ok) => setTimeout(ok, 100));
      }
      assert.equal(body, `hello from ${podIp}\n`);
      assert.equal(await fetchText(`http://${f.prefix}.1:${hostPort}/hello.txt`), body);
      assert.equal(await fetchText(`http://127.0.0.1:${hostPort}/hello.txt`), body);
    } finally {
      server.kill("SIGKILL");
      await server.status;
    }
    await cni.teardown("podp", ns);
    const nat = await sh("iptables", ["-w", "-t", "nat", "-S"]);
    assert.equal(nat.includes(`--dport ${hostPort}`), false, "portmap's rules are gone");
    assert.equal(nat.includes(podIp + "/"), false);
  }).finally(async () => {
    if (!hadChains) await removePortmapChains();
  });
});
