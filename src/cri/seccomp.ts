/**
 * Seccomp for CRI containers, as containerd chooses it: the security
 * context's profile (or the deprecated seccomp_profile_path), nothing for
 * privileged containers, and a `localhost/` profile file (Docker's JSON
 * format) turned into the OCI spec's `linux.seccomp`. The runtime's default
 * profile is built by seccomp_default.ts.
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import {
  type LinuxContainerSecurityContext,
  SecurityProfile_ProfileType as ProfileType,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";

/** The seccomp fields a container's and a sandbox's security contexts share. */
export type SeccompContext = Pick<
  LinuxContainerSecurityContext,
  "privileged" | "seccomp" | "seccompProfilePath"
>;

/** What a container's seccomp is to be. */
export type SeccompChoice =
  | { kind: "none" }
  | { kind: "default" }
  | { kind: "localhost"; path: string };

const PREFIX = "localhost/";

/** The choice for a container's security context; InvalidArgument for a malformed one. */
export function seccompChoice(sc: SeccompContext | undefined): SeccompChoice {
  if (sc === undefined || sc.privileged) return { kind: "none" };
  const sp = sc.seccomp;
  if (sp !== undefined) {
    if (sp.profileType !== ProfileType.Localhost && sp.localhostRef !== "") {
      throw invalidArgument(
        "seccomp config invalid LocalhostRef must only be set if ProfileType is Localhost",
      );
    }
    if (sp.profileType === ProfileType.Unconfined) return { kind: "none" };
    if (sp.profileType === ProfileType.RuntimeDefault) return { kind: "default" };
    return { kind: "localhost", path: sp.localhostRef.replace(/^localhost\//, "") };
  }
  const path = sc.seccompProfilePath;
  if (path === "") return { kind: "none" };
  if (path === "unconfined") return { kind: "none" };
  if (path === "runtime/default" || path === "docker/default") return { kind: "default" };
  if (!path.startsWith(PREFIX)) throw invalidArgument(`invalid profile ${JSON.stringify(path)}`);
  return { kind: "localhost", path: path.slice(PREFIX.length) };
}

/**
 * The spec's seccomp for a security context: undefined for none, "default"
 * for the runtime's profile (built once the capabilities are known), or a
 * `localhost/` file read and converted; InvalidArgument when it cannot be.
 */
export async function loadSeccomp(
  sc: SeccompContext | undefined,
): Promise<Record<string, unknown> | "default" | undefined> {
  const choice = seccompChoice(sc);
  if (choice.kind === "none") return undefined;
  if (choice.kind === "default") return "default";
  const text = await Deno.readTextFile(choice.path).catch((err) => {
    throw invalidArgument(
      `failed to load seccomp profile ${JSON.stringify(choice.path)}: ${err.message}`,
    );
  });
  return ociSeccomp(text, choice.path);
}

interface DockerSyscall {
  name?: string;
  names?: string[];
  action: string;
  args?: unknown[];
  errnoRet?: number;
}

/** A Docker-format seccomp profile (the file's text) as the OCI spec's `linux.seccomp`. */
export function ociSeccomp(text: string, source: string): Record<string, unknown> {
  let doc: {
    defaultAction?: string;
    defaultErrnoRet?: number;
    architectures?: string[];
    archMap?: { architecture: string; subArchitectures?: string[] }[];
    syscalls?: DockerSyscall[];
  };
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw invalidArgument(`seccomp profile ${source}: ${(err as Error).message}`);
  }
  if (typeof doc.defaultAction !== "string") {
    throw invalidArgument(`seccomp profile ${source}: no defaultAction`);
  }
  const arches = doc.architectures ??
    (doc.archMap ?? []).flatMap((a) => [a.architecture, ...(a.subArchitectures ?? [])]);
  return {
    defaultAction: doc.defaultAction,
    ...(doc.defaultErrnoRet !== undefined ? { defaultErrnoRet: doc.defaultErrnoRet } : {}),
    ...(arches.length > 0 ? { architectures: arches } : {}),
    syscalls: (doc.syscalls ?? []).map((s) => ({
      names: s.names ?? (s.name ? [s.name] : []),
      action: s.action,
      ...(s.args && s.args.length > 0 ? { args: s.args } : {}),
      ...(s.errnoRet !== undefined ? { errnoRet: s.errnoRet } : {}),
    })),
  };
}
