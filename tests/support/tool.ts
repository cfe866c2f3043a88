/**
 * Running a command-line tool (ctr, runc, umoci, skopeo, berth's client)
 * with a deadline, its output as text and its wall time.
 * @module
 */

import { spawn } from "../../src/spawn/mod.ts";

/** The outcome of {@link runTool}. */
export interface ToolResult {
  /** Exit status; -1 when the deadline killed it. */
  code: number;
  stdout: string;
  stderr: string;
  /** Wall time from start until its exit and its output closed, in milliseconds. */
  ms: number;
}

/** Options for {@link runTool}. */
export interface ToolOptions {
  /** Kill the tool (SIGKILL) after this long (default 120 s). */
  timeoutMs?: number;
  /** Variables added to the inherited environment. */
  env?: Record<string, string>;
  cwd?: string;
  /** Discard output instead of collecting it (for tools whose output is large or irrelevant). */
  discardOutput?: boolean;
  /** Written to the tool's stdin, which is then closed (default: no stdin). */
  input?: string;
}

async function readText(stream: ReadableStream<Uint8Array> | null): Promise<string> {
  if (!stream) return "";
  return await new Response(stream).text();
}

/**
 * Runs `cmd args` to completion. Never throws for a failing tool: a missing
 * executable gives code 127 and the reason in `stderr`, a deadline gives
 * code -1, so callers can report either as a measured fact.
 */
export async function runTool(
  cmd: string,
  args: string[],
  opts: ToolOptions = {},
): Promise<ToolResult> {
  const started = performance.now();
  const out = opts.discardOutput ? "null" : "piped";
  let child: Deno.ChildProcess;
  try {
    child = spawn(cmd, args, {
      stdin: opts.input === undefined ? "null" : "piped",
      stdout: out,
      stderr: out,
      env: opts.env,
      cwd: opts.cwd,
    });
  } catch (err) {
    return { code: 127, stdout: "", stderr: String((err as Error).message ?? err), ms: 0 };
  }
  if (opts.input !== undefined) {
    const w = child.stdin.getWriter();
    w.write(new TextEncoder().encode(opts.input)).then(() => w.close()).catch(() => {});
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      child.kill("SIGKILL");
    } catch { /* already exited */ }
  }, opts.timeoutMs ?? 120_000);
  try {
    const [status, stdout, stderr] = await Promise.all([
      child.status,
      readText(opts.discardOutput ? null : child.stdout),
      readText(opts.discardOutput ? null : child.stderr),
    ]);
    const ms = performance.now() - started;
    if (timedOut) {
      return {
        code: -1,
        stdout,
        stderr: `${stderr}\n${cmd}: killed after ${opts.timeoutMs ?? 120_000} ms`,
        ms,
      };
    }
    return { code: status.code, stdout, stderr, ms };
  } finally {
    clearTimeout(timer);
  }
}
