/**
 * README.md's commands run as written: every fenced block after a
 * `<!-- readme-test -->` comment, in order, in one `bash -eu` shell with a
 * temporary HOME and the built berth first on PATH (the blocks start their
 * own daemon under ~/berth and stop it). Blocks marked
 * `<!-- readme-test: skip (reason) -->` must give a reason; a shell block
 * with neither marker in the section that promises this is an error.
 *
 * Needs `make build` first (bin/berth).
 */
import assert from "node:assert/strict";
import { clearNamespace, privateCopy } from "./support/berth.ts";
import { mountsUnder } from "./support/mounts.ts";
import { isAlive, terminate } from "./support/proc.ts";
import { runTool } from "./support/tool.ts";

const README = new URL("../README.md", import.meta.url).pathname;
const SECTION = "## From the demo to your own containers";

/** A fenced block of README and how it is marked. */
interface Block {
  /** "run", "skip" (with `reason`), or "none" (no marker). */
  mark: "run" | "skip" | "none";
  reason?: string;
  lang: string;
  code: string;
  line: number;
}

/** The fenced code blocks of `text`, each with the readme-test marker before it, if any. */
function readmeBlocks(text: string): Block[] {
  const lines = text.split("\n");
  const blocks: Block[] = [];
  let marker: { mark: "run" | "skip"; reason?: string } | undefined;
  for (let i = 0; i < lines.length; i++) {
    const m = lines[i].match(/^<!-- readme-test(?:: skip \((.+)\))? -->$/);
    if (m) {
      marker = m[1] !== undefined ? { mark: "skip", reason: m[1] } : { mark: "run" };
      continue;
    }
    const fence = lines[i].match(/^```(\w*)$/);
    if (fence) {
      const start = i;
      const body: string[] = [];
      for (i++; i < lines.length && lines[i] !== "```"; i++) body.push(lines[i]);
      blocks.push({
        mark: marker?.mark ?? "none",
        reason: marker?.reason,
        lang: fence[1],
        code: body.join("\n"),
        line: start + 1,
      });
      marker = undefined;
      continue;
    }
  }
  return blocks;
}

Deno.test("readmeBlocks: markers, skips with reasons, unmarked blocks", () => {
  const text = [
    "<!-- readme-test -->",
    "",
    "```sh",
    "echo a",
    "```",
    "<!-- readme-test: skip (no registry) -->",
    "```sh",
    "pull",
    "```",
    "```",
    "plain",
    "```",
  ].join("\n");
  assert.deepEqual(readmeBlocks(text).map((b) => [b.mark, b.reason, b.code]), [
    ["run", undefined, "echo a"],
    ["skip", "no registry", "pull"],
    ["none", undefined, "plain"],
  ]);
});

Deno.test("README: the marked command blocks run as written", async () => {
  const text = await Deno.readTextFile(README);
  const start = text.indexOf(SECTION);
  assert.ok(start >= 0, `README has no "${SECTION}" section`);
  const end = text.indexOf("\n## ", start + SECTION.length);
  const section = text.slice(start, end < 0 ? undefined : end);
  const blocks = readmeBlocks(section);
  const unmarked = blocks.filter((b) => b.mark === "none" && b.lang === "sh");
  assert.deepEqual(unmarked, [], "shell blocks without a readme-test marker");
  const run = readmeBlocks(text).filter((b) => b.mark === "run");
  assert.ok(run.length >= 3, "too few blocks to run");

  const copy = await privateCopy();
  const home = await Deno.makeTempDir({ prefix: "berth-readme-" });
  const script = `${home}/readme.sh`;
  await Deno.writeTextFile(
    script,
    run.map((b) => `# README.md block of line ${b.line}\n${b.code}\n`).join("\n"),
  );
  try {
    const r = await runTool("bash", ["-eu", script], {
      cwd: home,
      env: {
        HOME: home,
        PATH: `${copy.dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
        BERTH_ADDRESS: "",
      },
      timeoutMs: 180_000,
    });
    assert.equal(
      r.code,
      0,
      `README blocks failed (exit ${r.code})\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`,
    );
    assert.match(r.stdout, /^hello from a container$/m);
    assert.match(r.stdout, /^docker\.io\/library\/busybox:mine /m, "images ls after the import");
  } finally {
    // The blocks stop their daemon; a failure part way may not have, nor
    // removed its containers (which would outlive the daemon).
    const pid = Number(await Deno.readTextFile(`${home}/berth/daemon.pid`).catch(() => "0"));
    if (pid > 0 && isAlive(pid)) {
      const address = `${home}/berth/berth.sock`;
      await clearNamespace(
        (args) => runTool(copy.path, ["--address", address, ...args]),
        "default",
      );
      await terminate([pid], 20_000);
    }
    for (let i = 0; i < 200 && pid > 0 && isAlive(pid); i++) {
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.deepEqual(mountsUnder(home), [], "mounts left under the README's HOME");
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("README: the Layout table names every folder of src/ and the top level", async () => {
  const text = await Deno.readTextFile(README);
  const start = text.indexOf("## Layout");
  const table = text.slice(start, text.indexOf("\n## ", start + 1));
  const named = new Set(
    [...table.matchAll(/`([^`\s]+?)\/?`/g)].map((m) => m[1].replace(/\/\*?$/, "")),
  );
  const root = new URL("..", import.meta.url).pathname;
  const missing: string[] = [];
  for (const e of Deno.readDirSync(`${root}src`)) {
    if (e.isDirectory && !named.has(`src/${e.name}`)) missing.push(`src/${e.name}`);
  }
  for (const dir of ["ffi", "proto", "tests", "scripts", "bench"]) {
    if (!named.has(dir)) missing.push(dir);
  }
  assert.deepEqual(missing.sort(), [], "folders the Layout table does not name");
});
