/**
 * The README's two commands on a bare Debian 12: `make check-fresh`
 * (scripts/check-fresh.sh) bootstraps a minbase chroot with only make and
 * git, runs `make setup` twice (the second must install nothing) and
 * `make build` there, and removes everything it made. It runs in the suite
 * so that CI proves the first hour on every landing.
 *
 * Needs root and the Debian mirror apt uses; where the mirror cannot be
 * reached the test says so and is skipped (everything else in the suite
 * runs offline).
 */
import assert from "node:assert/strict";
import { runTool } from "./support/tool.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

/** The first Debian mirror of apt's sources, as scripts/check-fresh.sh picks it. */
async function mirror(): Promise<string> {
  const r = await runTool("sh", [
    "-c",
    `cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's|^URIs: *\\(http[^ ]*/debian\\)/*$|\\1|p' | head -1`,
  ]);
  return r.stdout.trim() || "http://deb.debian.org/debian";
}

/** Why this machine cannot run the check, or undefined when it can. */
async function unavailable(): Promise<string | undefined> {
  if (Deno.uid() !== 0) return "not root";
  const url = `${await mirror()}/dists/bookworm/InRelease`;
  try {
    const res = await fetch(url, { method: "HEAD", signal: AbortSignal.timeout(20_000) });
    await res.body?.cancel();
    return res.ok ? undefined : `the Debian mirror answered ${res.status} for ${url}`;
  } catch (err) {
    return `the Debian mirror is not reachable (${url}: ${(err as Error).message})`;
  }
}

const why = await unavailable();
if (why !== undefined) console.log(`fresh_test: skipped: ${why}`);

Deno.test({
  name: "make check-fresh: setup and build on a bare Debian 12 chroot, idempotent, nothing left",
  ignore: why !== undefined,
  async fn() {
    // SIGTERM (not SIGKILL) at the deadline so the script's trap still
    // unmounts and deletes its chroot.
    const r = await runTool("timeout", [
      "-s",
      "TERM",
      "1500",
      "make",
      "-s",
      "-C",
      ROOT,
      "check-fresh",
    ], {
      timeoutMs: 1_600_000,
    });
    const out = r.stdout + r.stderr;
    console.log(out.split("\n").filter((l) => l.startsWith("check-fresh: passed")).join("\n"));
    assert.equal(r.code, 0, `make check-fresh: exit ${r.code}\n${out.slice(-4000)}`);
    assert.match(out, /check-fresh: passed in \d+ s/);
    const left = await runTool("sh", [
      "-c",
      "ls -d /var/tmp/berth-fresh-* 2>/dev/null; grep ' /var/tmp/berth-fresh-' /proc/mounts",
    ]);
    assert.equal(left.stdout.trim(), "", "check-fresh left its chroot behind");
  },
});
