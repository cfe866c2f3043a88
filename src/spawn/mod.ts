/**
 * berth's one way to start a process. Every child berth starts goes through
 * {@link spawn} or {@link run}, which remember its pid until Deno has
 * collected its exit status. A subreaper (the shim) asks {@link isOwnChild}
 * before reaping an orphan, so it never takes the exit status of a process
 * that Deno itself waits for.
 *
 * @example
 * ```ts
 * import { run } from "./mod.ts";
 * const r = await run("runc", ["--version"]);
 * console.log(r.code, new TextDecoder().decode(r.stdout));
 * ```
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { RUNTIME_FLAGS } from "./flags.ts";

export { RUNTIME_FLAGS };

/** How a child's stdio is set up. */
export type Stdio = "piped" | "inherit" | "null";

/** Options for {@link spawn} and {@link run}. */
export interface SpawnOptions {
  cwd?: string;
  env?: Record<string, string>;
  /** Start from an empty environment instead of inheriting berth's. */
  clearEnv?: boolean;
  stdin?: Stdio;
  stdout?: Stdio;
  stderr?: Stdio;
  /** Put the child in its own process group so it outlives berth's. */
  detached?: boolean;
}

/** The outcome of {@link run}. */
export interface RunResult {
  code: number;
  signal: Deno.Signal | null;
  success: boolean;
  stdout: Uint8Array;
  stderr: Uint8Array;
}

const ownPids = new Set<number>();

/**
 * True while `pid` is a child that Deno itself started and has not yet
 * reaped. Such a pid must never be waited for by anyone else.
 */
export function isOwnChild(pid: number): boolean {
  return ownPids.has(pid);
}

/**
 * Starts `cmd` with `args` and returns the child. The pid is remembered
 * until its status is collected (see {@link isOwnChild}). The caller must
 * await `child.status` (directly or through its streams).
 */
export function spawn(cmd: string, args: string[], opts: SpawnOptions = {}): Deno.ChildProcess {
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(cmd, {
      args,
      cwd: opts.cwd,
      env: opts.env,
      clearEnv: opts.clearEnv,
      stdin: opts.stdin ?? "null",
      stdout: opts.stdout ?? "piped",
      stderr: opts.stderr ?? "piped",
      detached: opts.detached,
    }).spawn();
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      // Deno says NotFound both for a missing executable and for a working
      // directory that is gone (an inherited cwd whose directory was removed).
      const why = /cwd/.test(err.message)
        ? `cannot start ${cmd}: its working directory is gone`
        : `${cmd}: executable not found in PATH`;
      throw new BerthError(Code.NotFound, why, { cause: err });
    }
    throw err;
  }
  const pid = child.pid;
  ownPids.add(pid);
  child.status.finally(() => ownPids.delete(pid));
  return child;
}

async function readAll(stream: ReadableStream<Uint8Array> | null): Promise<Uint8Array> {
  if (!stream) return new Uint8Array();
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Runs `cmd` to completion and collects its output. Only for programs that
 * do not leave descendants holding their stdout/stderr: reading waits for
 * EOF on those pipes. `input` is written to stdin, then stdin is closed.
 */
export async function run(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { input?: Uint8Array } = {},
): Promise<RunResult> {
  const child = spawn(cmd, args, {
    ...opts,
    stdin: opts.input ? "piped" : (opts.stdin ?? "null"),
    stdout: opts.stdout ?? "piped",
    stderr: opts.stderr ?? "piped",
  });
  if (opts.input) {
    const writer = child.stdin.getWriter();
    await writer.write(opts.input).catch(() => {});
    await writer.close().catch(() => {});
  }
  const [status, stdout, stderr] = await Promise.all([
    child.status,
    readAll((opts.stdout ?? "piped") === "piped" ? child.stdout : null),
    readAll((opts.stderr ?? "piped") === "piped" ? child.stderr : null),
  ]);
  return { code: status.code, signal: status.signal, success: status.success, stdout, stderr };
}

/**
 * Like {@link run}, but a non-zero exit becomes a {@link BerthError} whose
 * message is the program's own stderr (what a person needs to see).
 */
export async function runChecked(
  cmd: string,
  args: string[],
  opts: SpawnOptions & { input?: Uint8Array } = {},
): Promise<RunResult> {
  const r = await run(cmd, args, opts);
  if (!r.success) {
    const text = new TextDecoder().decode(r.stderr).trim() || `exit status ${r.code}`;
    throw new BerthError(Code.Unknown, `${cmd} ${args[0] ?? ""}: ${text}`);
  }
  return r;
}

/**
 * The command line that runs this same program with `args`, whichever form
 * it is in: a compiled binary (itself), a bundle (deno + the bundle file),
 * or a source checkout (deno run mod.ts with the repo's deno.json).
 */
export function selfCommand(args: string[]): { cmd: string; args: string[] } {
  if (Deno.build.standalone) return { cmd: Deno.execPath(), args };
  const main = new URL(Deno.mainModule);
  const path = decodeURIComponent(main.pathname);
  const prefix = ["run", ...RUNTIME_FLAGS];
  if (path.endsWith(".ts")) {
    // A source checkout: the import map lives beside mod.ts, not in the cwd.
    prefix.push("--config", new URL("./deno.json", main).pathname);
  } else {
    prefix.push("--no-config", "--ext=js");
  }
  return { cmd: Deno.execPath(), args: [...prefix, path, ...args] };
}
