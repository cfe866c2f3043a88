/**
 * docker-registry (Debian's distribution registry) on a free loopback port
 * for pull tests, storing under a temporary directory, optionally with
 * htpasswd basic auth; stopped by pid.
 *
 * @example
 * ```ts
 * const reg = await startRegistry(`${tmp}/registry`, { user: "u", password: "p" });
 * await runTool("skopeo", ["copy", "--dest-tls-verify=false", `oci:${layout}`, `docker://${reg.host}/x:1`]);
 * await reg.stop();
 * ```
 * @module
 */

import { spawn } from "../../src/spawn/mod.ts";
import { runTool } from "./tool.ts";

/** A running registry. */
export interface Registry {
  /** "127.0.0.1:<port>". */
  host: string;
  /** Stops it (SIGTERM) and waits for its exit. */
  stop(): Promise<void>;
}

/** A loopback TCP port nobody listens on right now. */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** A bcrypt htpasswd line, which docker-registry wants, from the system's crypt(3). */
async function htpasswdLine(user: string, password: string): Promise<string> {
  const r = await runTool("python3", [
    "-W",
    "ignore",
    "-c",
    "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))",
    password,
  ]);
  const hash = r.stdout.trim();
  if (r.code !== 0 || !/^\$2[aby]\$/.test(hash)) {
    throw new Error(`bcrypt hash failed (${r.code}): ${r.stderr.trim()}`);
  }
  return `${user}:${hash}\n`;
}

/** Starts docker-registry storing under `dir` (created); with `auth`, basic auth for that user only. */
export async function startRegistry(
  dir: string,
  auth?: { user: string; password: string },
): Promise<Registry> {
  await Deno.mkdir(`${dir}/storage`, { recursive: true });
  const port = freePort();
  const lines = [
    "version: 0.1",
    "log:",
    "  level: warn",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${dir}/storage`,
    "http:",
    `  addr: 127.0.0.1:${port}`,
  ];
  if (auth) {
    await Deno.writeTextFile(`${dir}/htpasswd`, await htpasswdLine(auth.user, auth.password));
    lines.push("auth:", "  htpasswd:", "    realm: berth-test", `    path: ${dir}/htpasswd`);
  }
  await Deno.writeTextFile(`${dir}/config.yml`, lines.join("\n") + "\n");
  const child = spawn("docker-registry", ["serve", `${dir}/config.yml`], {
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  });
  const logFile = await Deno.open(`${dir}/registry.log`, { write: true, create: true });
  const logDone = child.stderr!.pipeTo(logFile.writable).catch(() => {});
  const stop = async () => {
    try {
      Deno.kill(child.pid, "SIGTERM");
    } catch {
      // exited already
    }
    await child.status;
    await logDone;
  };
  const host = `127.0.0.1:${port}`;
  for (let i = 0;; i++) {
    try {
      const res = await fetch(`http://${host}/v2/`);
      await res.body?.cancel();
      if (res.status === 200 || res.status === 401) break;
    } catch {
      // not listening yet
    }
    if (i > 200) {
      await stop();
      throw new Error(`registry did not start: ${await Deno.readTextFile(`${dir}/registry.log`)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return { host, stop };
}
