/**
 * `berth oci-hook -- COMMAND ARGS...`: what containerd's `oci-hook`
 * subcommand is. An OCI runtime runs it as a hook with the container's state
 * on stdin; it renders the templates of {@link renderTemplate} in COMMAND's
 * arguments and in the environment, then runs COMMAND with the same state on
 * its stdin and exits with its status. containerd replaces itself with the
 * command (exec); Deno has no exec, so berth starts the command as a child
 * and passes its status on (128+N for a signal, as a shell does).
 * @module
 */

import { invalidArgument, toBerthError } from "../errdefs/mod.ts";
import { spawn } from "../spawn/mod.ts";
import { type HookState, renderTemplate, type TemplateContext } from "./template.ts";

export { type HookState, renderTemplate, type TemplateContext } from "./template.ts";

/** Parses the state a runtime gives a hook, with a clear error for what is not one. */
export function parseHookState(bytes: Uint8Array): HookState {
  let state: unknown;
  try {
    state = JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    throw invalidArgument(`the OCI state on stdin is not JSON: ${(err as Error).message}`);
  }
  const s = state as HookState | null;
  if (typeof s !== "object" || s === null || typeof s.id !== "string" || !s.bundle) {
    throw invalidArgument(`the OCI state on stdin has no "id" and "bundle"`);
  }
  return s;
}

async function loadContext(state: HookState): Promise<TemplateContext> {
  const path = `${state.bundle}/config.json`;
  let spec: { root?: { path?: string } };
  try {
    spec = JSON.parse(await Deno.readTextFile(path));
  } catch (err) {
    throw invalidArgument(`cannot read the bundle's spec ${path}: ${(err as Error).message}`);
  }
  return { state, root: spec.root?.path ?? "" };
}

/** Runs the oci-hook command on `args` (everything after `oci-hook`); returns the exit status. */
export async function ociHookMain(args: string[]): Promise<number> {
  const argv = args[0] === "--" ? args.slice(1) : args;
  try {
    if (argv.length === 0) {
      throw invalidArgument("usage: berth oci-hook -- COMMAND [ARG...] (the OCI state on stdin)");
    }
    const input = new Uint8Array(await new Response(Deno.stdin.readable).arrayBuffer());
    const state = parseHookState(input);
    const ctx = await loadContext(state);
    const [cmd, ...rest] = argv.map((a) => renderTemplate(a, ctx));
    const env: Record<string, string> = {};
    for (const [k, v] of Object.entries(Deno.env.toObject())) {
      const kv = renderTemplate(`${k}=${v}`, ctx);
      const i = kv.indexOf("=");
      env[kv.slice(0, i)] = kv.slice(i + 1);
    }
    const child = spawn(cmd, rest, {
      env,
      clearEnv: true,
      stdin: "piped",
      stdout: "inherit",
      stderr: "inherit",
    });
    const writer = child.stdin.getWriter();
    // A command that does not read its stdin closes it early: that is no error.
    await writer.write(input).catch(() => {});
    await writer.close().catch(() => {});
    const status = await child.status;
    // Deno reports a child killed by signal N as code 128+N, a shell's convention.
    return status.code;
  } catch (err) {
    const e = toBerthError(err);
    console.error(`berth oci-hook: ${e.message}`);
    const { exitStatusFor } = await import("../client/errors.ts");
    return exitStatusFor(e.code);
  }
}
