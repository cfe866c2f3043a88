/**
 * ExecSync: a process run in a container to its end (or its timeout), its
 * output collected through fifos up to a cap, then deleted from the shim.
 * @module
 */

import { deadlineExceeded } from "../errdefs/mod.ts";
import type { Spec } from "../oci/mod.ts";
import type { ShimTask } from "../runtime/mod.ts";
import { readFifo } from "./logs.ts";

/** What ExecSync answers. */
export interface ExecResult {
  stdout: Uint8Array;
  stderr: Uint8Array;
  exitCode: number;
}

/** How to run one ExecSync. */
export interface ExecSyncOptions {
  /** The container's spec: the exec runs as its process does, with `cmd` as args. */
  spec: Spec;
  cmd: string[];
  /** 0: no timeout. */
  timeoutMs: number;
  /** Where the fifos are made. */
  fifoDir: string;
  /** Bytes kept per stream; the rest is dropped. */
  outputCap: number;
}

const PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";

/** Collects chunks up to `cap` bytes. */
function collector(cap: number) {
  const chunks: Uint8Array[] = [];
  let size = 0;
  return {
    add(c: Uint8Array) {
      if (size >= cap) return;
      const part = c.subarray(0, cap - size);
      chunks.push(part);
      size += part.length;
    },
    bytes(): Uint8Array {
      const out = new Uint8Array(size);
      let off = 0;
      for (const c of chunks) {
        out.set(c, off);
        off += c.length;
      }
      return out;
    },
  };
}

/**
 * Creates process `execId` in task `t` (not started): the container's own
 * process settings from `spec`, with `cmd` as its args, on the given stdio.
 */
export async function createExec(
  t: ShimTask,
  execId: string,
  spec: Spec,
  cmd: string[],
  stdio: { stdin: string; stdout: string; stderr: string; terminal: boolean },
): Promise<void> {
  const process = { ...spec.process, args: cmd, terminal: stdio.terminal };
  await t.task.exec({
    id: t.id,
    execId,
    ...stdio,
    spec: {
      $typeName: "google.protobuf.Any",
      typeUrl: PROCESS_TYPE_URL,
      value: new TextEncoder().encode(JSON.stringify(process)),
    },
  });
}

/** Runs `opts.cmd` in task `t` and returns its output and exit code. */
export async function execSync(t: ShimTask, opts: ExecSyncOptions): Promise<ExecResult> {
  const execId = crypto.randomUUID().replaceAll("-", "");
  const dir = `${opts.fifoDir}/${t.id.slice(0, 12)}-${execId}`;
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const stop = new AbortController();
  const out = collector(opts.outputCap);
  const err = collector(opts.outputCap);
  const stdout = `${dir}/stdout`;
  const stderr = `${dir}/stderr`;
  const reads = [
    readFifo(stdout, (c) => out.add(c), stop.signal),
    readFifo(stderr, (c) => err.add(c), stop.signal),
  ];
  let created = false;
  try {
    await createExec(t, execId, opts.spec, opts.cmd, {
      stdin: "",
      stdout,
      stderr,
      terminal: false,
    });
    created = true;
    await t.task.start({ id: t.id, execId });
    const waited = t.task.wait({ id: t.id, execId });
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timedOut = opts.timeoutMs > 0
      ? new Promise<"timeout">((r) => timer = setTimeout(() => r("timeout"), opts.timeoutMs))
      : new Promise<never>(() => {});
    const r = await Promise.race([waited, timedOut]);
    clearTimeout(timer);
    if (r === "timeout") {
      await t.task.kill({ id: t.id, execId, signal: 9 }).catch(() => {});
      await waited.catch(() => {});
      throw deadlineExceeded(`timeout ${opts.timeoutMs / 1000}s exceeded running ${opts.cmd[0]}`);
    }
    stop.abort();
    await Promise.allSettled(reads);
    return { stdout: out.bytes(), stderr: err.bytes(), exitCode: r.exitStatus };
  } finally {
    stop.abort();
    await Promise.allSettled(reads);
    if (created) await t.task.delete({ id: t.id, execId }).catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
