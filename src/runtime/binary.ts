/**
 * Running a shim binary the way containerd does: `start` (which forks the
 * long-lived shim and prints its address) and `delete` (which cleans up
 * after a shim that is gone and prints a DeleteResponse).
 *
 * @module
 */

import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema } from "@bufbuild/protobuf/wkt";
import { BerthError, Code, notFound } from "../errdefs/mod.ts";
import { type DeleteResponse, DeleteResponseSchema } from "../gen/containerd/task/v2/shim_pb.ts";
import { log } from "../log/mod.ts";
import { run } from "../spawn/mod.ts";
import type { Bundle } from "./bundle.ts";

/** What every shim command needs to know about the daemon. */
export interface ShimEnvironment {
  /** The daemon's gRPC address (`-address`). */
  address: string;
  /** The daemon's ttrpc address (TTRPC_ADDRESS), where shims forward events. */
  ttrpcAddress: string;
  /** The program a shim runs to publish events (`-publish-binary`). */
  publishBinary: string;
  /** Pass `-debug` to shims. */
  debug: boolean;
  /** Where berth's shims put their sockets (BERTH_SHIM_SOCKET_DIR); other shims ignore it. */
  socketDir?: string;
  /** The daemon's tracing settings as OpenTelemetry variables (see src/tracing). */
  tracing?: Record<string, string>;
}

async function isExecutableFile(path: string): Promise<boolean> {
  try {
    const st = await Deno.stat(path);
    return st.isFile && ((st.mode ?? 0o111) & 0o111) !== 0;
  } catch {
    return false;
  }
}

/** Directories where berth's own files sit: beside the executable, or the checkout's bin/. */
export function berthDirs(): string[] {
  const dirs: string[] = [];
  if (Deno.build.standalone) {
    dirs.push(Deno.execPath().replace(/\/[^/]*$/, ""));
  } else {
    const main = new URL(Deno.mainModule);
    if (main.protocol === "file:") {
      // A bundle (bin/berth) sits beside the shim alias; a source checkout's mod.ts beside bin/.
      dirs.push(decodeURIComponent(new URL(".", main).pathname).replace(/\/$/, ""));
      dirs.push(decodeURIComponent(new URL("./bin", main).pathname));
    }
  }
  return dirs;
}

/**
 * The absolute path of shim `binary`: an absolute path is checked as is; a
 * name is searched on PATH, then beside berth's executable. NotFound,
 * naming the runtime, when it is nowhere.
 */
export async function resolveShimBinary(runtime: string, binary: string): Promise<string> {
  if (binary.includes("/")) {
    if (await isExecutableFile(binary)) return binary;
    throw notFound(`runtime ${JSON.stringify(runtime)}: shim binary ${binary} not installed`);
  }
  const path = (Deno.env.get("PATH") ?? "").split(":").filter((d) => d !== "");
  for (const dir of [...path, ...berthDirs()]) {
    const candidate = `${dir}/${binary}`;
    if (await isExecutableFile(candidate)) return candidate;
  }
  throw notFound(
    `runtime ${JSON.stringify(runtime)}: shim binary ${binary} not installed (not on PATH${
      berthDirs().length ? ` nor in ${berthDirs().join(", ")}` : ""
    })`,
  );
}

function shimArgs(env: ShimEnvironment, bundle: Bundle, extra: string[]): string[] {
  return [
    "-namespace",
    bundle.namespace,
    "-address",
    env.address,
    "-publish-binary",
    env.publishBinary,
    ...extra,
  ];
}

/** The environment a shim runs with (containerd's: TTRPC_ADDRESS, GOMAXPROCS; berth's socket dir). */
export function shimEnv(env: ShimEnvironment): Record<string, string> {
  const out: Record<string, string> = { GOMAXPROCS: "2", TTRPC_ADDRESS: env.ttrpcAddress };
  if (env.socketDir) out.BERTH_SHIM_SOCKET_DIR = env.socketDir;
  if (env.tracing !== undefined) Object.assign(out, env.tracing);
  return out;
}

/** The longest path a unix socket can have (sun_path is 108 bytes with its NUL). */
const MAX_SOCKET_PATH = 107;
/** A shim socket's name: 64 hex digits of a sha256 (as containerd's shims name theirs). */
const SOCKET_NAME_LENGTH = 64;

/**
 * The directory berth's shims put their sockets in for a daemon whose
 * state is at `state`: `configured` when set, else `<state>/s` (so daemons
 * on their own paths never share it), else, when a socket there would be
 * over the unix path limit, the system default /run/berth/s (containerd
 * keeps its shims' sockets short under /run/containerd/s for the same reason).
 */
export function shimSocketDir(state: string, configured = ""): string {
  if (configured) return configured;
  const dir = `${state.replace(/\/+$/, "")}/s`;
  if (new TextEncoder().encode(dir).length + 1 + SOCKET_NAME_LENGTH <= MAX_SOCKET_PATH) return dir;
  return "/run/berth/s";
}

/**
 * The socket path in what `start` printed: a bare address (containerd 1.6
 * shims) or bootstrap JSON `{"version":..,"address":..,"protocol":"ttrpc"}`
 * (newer shims).
 */
export function parseShimAddress(output: string): string {
  let text = output.trim();
  if (text.startsWith("{")) {
    const params = JSON.parse(text) as { address?: string; protocol?: string };
    if (params.protocol !== undefined && params.protocol !== "ttrpc") {
      throw new BerthError(
        Code.Unimplemented,
        `shim speaks ${params.protocol}; berth talks to shims over ttrpc only`,
      );
    }
    text = params.address ?? "";
  }
  if (!text.startsWith("unix://") && !text.startsWith("/")) {
    throw new BerthError(
      Code.Internal,
      `shim start printed no socket address: ${JSON.stringify(output)}`,
    );
  }
  return text;
}

/**
 * Runs `<binary> ... -id <id> [-debug] start` in the bundle with the
 * runtime options on stdin and returns the address it printed.
 */
export async function startShimBinary(
  binary: string,
  env: ShimEnvironment,
  bundle: Bundle,
  options: Any | undefined,
): Promise<string> {
  const args = shimArgs(env, bundle, ["-id", bundle.id, ...(env.debug ? ["-debug"] : []), "start"]);
  const r = await run(binary, args, {
    cwd: bundle.path,
    env: shimEnv(env),
    input: options === undefined ? undefined : toBinary(AnySchema, options),
  });
  const out = new TextDecoder().decode(r.stdout) + new TextDecoder().decode(r.stderr);
  if (!r.success) {
    throw new BerthError(
      Code.Unknown,
      `start shim ${binary} for ${bundle.namespace}/${bundle.id}: ${
        out.trim() || `exit status ${r.code}`
      }`,
    );
  }
  return parseShimAddress(new TextDecoder().decode(r.stdout));
}

/**
 * Runs `<binary> ... -id <id> -bundle <path> delete`, the shim's cleanup
 * of a task whose shim is gone, and returns the DeleteResponse it printed.
 */
export async function deleteShimBinary(
  binary: string,
  env: ShimEnvironment,
  bundle: Bundle,
): Promise<DeleteResponse> {
  const args = shimArgs(env, bundle, ["-id", bundle.id, "-bundle", bundle.path, "delete"]);
  let cwd: string | undefined = bundle.path;
  try {
    await Deno.stat(bundle.path);
  } catch {
    cwd = undefined;
  }
  const r = await run(binary, args, { cwd, env: shimEnv(env) });
  const stderr = new TextDecoder().decode(r.stderr).trim();
  if (!r.success) {
    throw new BerthError(
      Code.Unknown,
      `shim delete of ${bundle.namespace}/${bundle.id}: ${stderr || `exit status ${r.code}`}`,
    );
  }
  if (stderr !== "") log.warn("shim cleanup warnings", { id: bundle.id, output: stderr });
  try {
    return fromBinary(DeleteResponseSchema, r.stdout);
  } catch (err) {
    throw new BerthError(
      Code.Internal,
      `shim delete of ${bundle.namespace}/${bundle.id} printed no DeleteResponse: ${String(err)}`,
    );
  }
}
