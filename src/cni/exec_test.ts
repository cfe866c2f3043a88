// The exec protocol against small shell-script plugins that record what
// they were given (environment and stdin) or misbehave on purpose: the
// things real plugins do not show (order, prevResult, error codes, hangs).

import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { parseNetwork } from "./config.ts";
import { addList, checkList, delList, type Invocation, pluginVersions } from "./exec.ts";

const INV: Invocation = {
  containerId: "c1",
  netns: "/run/netns/x",
  ifname: "eth0",
  args: [["K8S_POD_NAME", "p"], ["IgnoreUnknown", "1"]],
  capabilityArgs: { portMappings: [{ hostPort: 1, containerPort: 2, protocol: "tcp" }] },
};

/** A bin dir with `rec1`/`rec2` (record and answer) and `fail`/`hang`/`garbage` plugins. */
async function binDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "berth-cni-bin-" });
  for (const n of ["1", "2"]) {
    await Deno.writeTextFile(
      `${dir}/rec${n}`,
      `#!/bin/sh
in=$(cat)
printf '%s|%s|%s|%s|%s|%s|%s\\n' "$CNI_COMMAND" rec${n} "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "$CNI_PATH" >> ${dir}/log
printf '%s\\n' "$in" >> ${dir}/log
[ "$CNI_COMMAND" = VERSION ] && { echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}'; exit 0; }
[ "$CNI_COMMAND" = ADD ] && echo '{"cniVersion":"1.0.0","ips":[{"address":"10.9.9.${n}/24"}]}'
exit 0
`,
      { mode: 0o755 },
    );
  }
  await Deno.writeTextFile(
    `${dir}/fail`,
    `#!/bin/sh
cat >/dev/null
echo '{"cniVersion":"1.0.0","code":11,"msg":"resource busy","details":"try again in a moment"}'
exit 1
`,
    { mode: 0o755 },
  );
  await Deno.writeTextFile(
    `${dir}/crash`,
    "#!/bin/sh\ncat >/dev/null\necho 'segfault, sort of' >&2\nexit 2\n",
    { mode: 0o755 },
  );
  await Deno.writeTextFile(`${dir}/garbage`, "#!/bin/sh\ncat >/dev/null\necho 'not json'\n", {
    mode: 0o755,
  });
  // Forks a child that keeps the pipes open, and waits: only a kill ends it.
  await Deno.writeTextFile(
    `${dir}/hang`,
    `#!/bin/sh\nsleep 30 &\necho $! > ${dir}/hang.pid\nwait\n`,
    { mode: 0o755 },
  );
  return dir;
}

interface Call {
  command: string;
  plugin: string;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
  path: string;
  stdin: Record<string, unknown>;
}

async function calls(dir: string): Promise<Call[]> {
  const lines = (await Deno.readTextFile(`${dir}/log`)).trim().split("\n");
  const out: Call[] = [];
  for (let i = 0; i < lines.length; i += 2) {
    const [command, plugin, containerId, netns, ifname, args, path] = lines[i].split("|");
    out.push({
      command,
      plugin,
      containerId,
      netns,
      ifname,
      args,
      path,
      stdin: JSON.parse(lines[i + 1]),
    });
  }
  return out;
}

function list(version: string, ...types: string[]) {
  return parseNetwork(JSON.stringify({
    cniVersion: version,
    name: "testnet",
    plugins: types.map((type, i) => ({
      type,
      ...(i === 1 ? { capabilities: { portMappings: true } } : {}),
    })),
  }));
}

Deno.test("ADD runs plugins in order, chaining prevResult; DEL runs them in reverse with the saved result", async () => {
  const dir = await binDir();
  try {
    const opts = { binDirs: [`${dir}/empty`, dir], timeoutMs: 10_000 };
    const net = list("1.0.0", "rec1", "rec2");
    const result = await addList(net, INV, opts);
    assert.deepEqual(result, { cniVersion: "1.0.0", ips: [{ address: "10.9.9.2/24" }] });
    await delList(net, { ...INV, netns: "" }, result, opts);
    await checkList(net, INV, result, opts);
    const c = await calls(dir);
    assert.deepEqual(c.map((x) => `${x.command} ${x.plugin}`), [
      "ADD rec1",
      "ADD rec2",
      "DEL rec2",
      "DEL rec1",
      "CHECK rec1",
      "CHECK rec2",
    ]);
    assert.deepEqual(c[0], {
      command: "ADD",
      plugin: "rec1",
      containerId: "c1",
      netns: "/run/netns/x",
      ifname: "eth0",
      args: "K8S_POD_NAME=p;IgnoreUnknown=1",
      path: `${dir}/empty:${dir}`,
      stdin: { type: "rec1", name: "testnet", cniVersion: "1.0.0" },
    });
    assert.deepEqual(c[1].stdin, {
      type: "rec2",
      capabilities: { portMappings: true },
      name: "testnet",
      cniVersion: "1.0.0",
      prevResult: { cniVersion: "1.0.0", ips: [{ address: "10.9.9.1/24" }] },
      runtimeConfig: { portMappings: INV.capabilityArgs.portMappings },
    });
    assert.equal(c[2].netns, "");
    for (const x of c.slice(2)) assert.deepEqual(x.stdin.prevResult, result);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("before 0.4.0 DEL gets no prevResult and CHECK is refused", async () => {
  const dir = await binDir();
  try {
    const opts = { binDirs: [dir], timeoutMs: 10_000 };
    const net = list("0.3.1", "rec1");
    const result = await addList(net, INV, opts);
    await delList(net, INV, result, opts);
    const c = await calls(dir);
    assert.equal(c[1].command, "DEL");
    assert.equal("prevResult" in c[1].stdin, false);
    await assert.rejects(
      checkList(net, INV, result, opts),
      (e) =>
        isCode(e, Code.FailedPrecondition) && /does not support the CHECK command/.test(String(e)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a plugin's failure becomes a BerthError naming it: error JSON, stderr, bad output", async () => {
  const dir = await binDir();
  try {
    const opts = { binDirs: [dir], timeoutMs: 10_000 };
    await assert.rejects(addList(list("1.0.0", "rec1", "fail"), INV, opts), (e) => {
      assert.ok(isCode(e, Code.Unavailable), String(e)); // CNI code 11: try again later
      assert.equal(
        (e as Error).message,
        `plugin type="fail" failed (add): resource busy; try again in a moment`,
      );
      return true;
    });
    await assert.rejects(
      delList(list("1.0.0", "crash"), INV, undefined, opts),
      (e) =>
        isCode(e, Code.Unknown) &&
        (e as Error).message === `plugin type="crash" failed (del): segfault, sort of`,
    );
    await assert.rejects(
      addList(list("1.0.0", "garbage"), INV, opts),
      /plugin type="garbage" failed \(add\): result is not JSON: not json/,
    );
    // DEL goes on past a failing plugin, so the others still free what they hold.
    await assert.rejects(
      delList(list("1.0.0", "rec1", "fail"), INV, undefined, opts),
      /resource busy/,
    );
    assert.deepEqual((await calls(dir)).map((x) => `${x.command} ${x.plugin}`), [
      "ADD rec1",
      "DEL rec1",
    ]);
    assert.deepEqual(await pluginVersions("rec1", opts), ["0.4.0", "1.0.0"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a plugin that does not answer in time is killed: DeadlineExceeded", async () => {
  const dir = await binDir();
  try {
    const started = Date.now();
    await assert.rejects(
      addList(list("1.0.0", "hang"), INV, { binDirs: [dir], timeoutMs: 300 }),
      (e) =>
        isCode(e, Code.DeadlineExceeded) &&
        /plugin type="hang" failed \(add\): no answer within 300 ms/.test(String(e)),
    );
    // Returned though the plugin's own child still holds its stdout.
    assert.ok(Date.now() - started < 10_000);
  } finally {
    // The plugin's child outlived it (reparented): end exactly that process.
    const pid = Number((await Deno.readTextFile(`${dir}/hang.pid`)).trim());
    try {
      Deno.kill(pid, "SIGKILL");
    } catch {
      // gone already
    }
    await Deno.remove(dir, { recursive: true });
  }
});
