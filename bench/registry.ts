/**
 * A loopback image registry for the pull benchmark: Debian's docker-registry
 * on 127.0.0.1 and a free port, storing into a temporary directory, with a
 * config file written here (the packaged one asks for htpasswd auth and a
 * system-wide storage path). Images are pushed into it with skopeo.
 * @module
 */

import { spawn } from "../src/spawn/mod.ts";
import { runTool } from "../tests/support/tool.ts";
import { isAlive, terminate } from "../tests/support/proc.ts";
import { existsSync } from "../src/fsutil/mod.ts";

const SKOPEO_CACHE_PARENT = "/var/lib/containers";

/** A running registry started by {@link startRegistry}. */
export interface Registry {
  pid: number;
  /** host:port, e.g. 127.0.0.1:41234 */
  host: string;
  dir: string;
  /** Pushes an OCI archive to `host/<repo>:<tag>`; returns the reference to pull. */
  push(archive: string, repoAndTag: string): Promise<string>;
  /** Stops the registry (by pid) and removes its directory; safe to call twice. */
  stop(): Promise<void>;
}

/** A TCP port on 127.0.0.1 that nothing listened on a moment ago. */
export function freeLoopbackPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

async function answers(host: string): Promise<boolean> {
  try {
    const r = await fetch(`http://${host}/v2/`, { signal: AbortSignal.timeout(1000) });
    await r.body?.cancel();
    return r.status === 200;
  } catch {
    return false;
  }
}

/** Starts docker-registry on 127.0.0.1:<free port> and waits until /v2/ answers. */
export async function startRegistry(): Promise<Registry> {
  const dir = await Deno.makeTempDir({ prefix: "berth-bench-registry-" });
  const port = freeLoopbackPort();
  const host = `127.0.0.1:${port}`;
  const config = [
    "version: 0.1",
    "log:",
    "  level: error",
    "  accesslog:",
    "    disabled: true",
    "storage:",
    "  filesystem:",
    `    rootdirectory: ${dir}/storage`,
    "  delete:",
    "    enabled: true",
    "http:",
    `  addr: ${host}`,
    "",
  ].join("\n");
  await Deno.writeTextFile(`${dir}/config.yml`, config);
  const child = spawn("/bin/sh", [
    "-c",
    'exec "$0" serve "$1" >>"$2" 2>&1',
    "/usr/bin/docker-registry",
    `${dir}/config.yml`,
    `${dir}/registry.log`,
  ], { stdout: "null", stderr: "null" });
  let exited = false;
  const status = child.status.then(() => {
    exited = true;
  });

  let stopping: Promise<void> | null = null;
  const stop = () => {
    stopping ??= (async () => {
      if (!exited) await terminate([child.pid], 3000);
      await status;
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    })();
    return stopping;
  };

  const deadline = Date.now() + 15_000;
  while (!(await answers(host))) {
    if (exited || Date.now() > deadline) {
      const log = await Deno.readTextFile(`${dir}/registry.log`).catch(() => "");
      await stop();
      throw new Error(
        `docker-registry did not start on ${host}: ${log.trim().split("\n").slice(-5).join("\n")}`,
      );
    }
    await new Promise((r) => setTimeout(r, 50));
  }

  const push = async (archive: string, repoAndTag: string) => {
    const ref = `${host}/${repoAndTag}`;
    // skopeo (as root) keeps a blob-info cache in /var/lib/containers/cache,
    // which no option moves; remove it again when this push created it.
    const cacheParentExisted = existsSync(SKOPEO_CACHE_PARENT);
    const r = await runTool("skopeo", [
      "--insecure-policy",
      "copy",
      "--quiet",
      "--dest-tls-verify=false",
      `oci-archive:${archive}`,
      `docker://${ref}`,
    ], { timeoutMs: 600_000, env: { TMPDIR: dir } });
    if (!cacheParentExisted) {
      // Only what skopeo made, and directories only while empty.
      for (const p of ["cache/blob-info-cache-v1.boltdb", "cache", ""]) {
        await Deno.remove(`${SKOPEO_CACHE_PARENT}/${p}`.replace(/\/$/, "")).catch(() => {});
      }
    }
    if (r.code !== 0) throw new Error(`skopeo copy to ${ref} failed: ${r.stderr.trim()}`);
    return ref;
  };

  return { pid: child.pid, host, dir, push, stop };
}

/** True while the registry process runs. */
export function registryRunning(r: Registry): boolean {
  return isAlive(r.pid);
}
