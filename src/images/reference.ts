/**
 * Image references: "busybox", "docker.io/library/busybox:latest",
 * "127.0.0.1:5000/team/app@sha256:...", normalized as containerd and docker do.
 *
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import { isDigest } from "../content/mod.ts";

/** A parsed, normalized reference. */
export interface Reference {
  /** Registry host (with port), e.g. "docker.io" or "127.0.0.1:5000". */
  host: string;
  /** Repository path inside the registry, e.g. "library/busybox". */
  repository: string;
  /** The tag, when the reference names one ("latest" when it names neither tag nor digest). */
  tag?: string;
  /** The digest, when the reference pins one. */
  digest?: string;
}

const DOCKER_HUB = "docker.io";
const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[\w][\w.-]{0,127}$/;

/**
 * Parses `ref` and fills in what docker assumes: host docker.io, the
 * "library/" prefix for one-component Hub names, tag "latest".
 */
export function parseReference(ref: string): Reference {
  const bad = (why: string) => invalidArgument(`invalid reference ${JSON.stringify(ref)}: ${why}`);
  let rest = ref;
  let digest: string | undefined;
  const at = rest.indexOf("@");
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!isDigest(digest)) throw bad("malformed digest");
  }
  let tag: string | undefined;
  const lastSlash = rest.lastIndexOf("/");
  const colon = rest.lastIndexOf(":");
  if (colon > lastSlash) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG.test(tag)) throw bad("malformed tag");
  }
  const parts = rest.split("/");
  let host = DOCKER_HUB;
  // The first component is a host when it looks like one (a dot, a port, or localhost).
  if (parts.length > 1 && (/[.:]/.test(parts[0]) || parts[0] === "localhost")) {
    host = parts.shift()!;
  }
  if (parts.length === 0 || parts.some((p) => !COMPONENT.test(p))) {
    throw bad("repository must be lower-case components separated by /");
  }
  if (host === DOCKER_HUB && parts.length === 1) parts.unshift("library");
  if (!tag && !digest) tag = "latest";
  return { host, repository: parts.join("/"), tag, digest };
}

/** The full name of `r`, e.g. "docker.io/library/busybox:latest". */
export function formatReference(r: Reference): string {
  return `${r.host}/${r.repository}${r.tag ? `:${r.tag}` : ""}${r.digest ? `@${r.digest}` : ""}`;
}

/** Normalizes a name as containerd stores it ("busybox" -> "docker.io/library/busybox:latest"). */
export function normalizeName(ref: string): string {
  return formatReference(parseReference(ref));
}

/** The short form docker shows ("docker.io/library/busybox:latest" -> "busybox:latest"). */
export function familiarName(ref: string): string {
  const r = parseReference(ref);
  let repo = r.host === DOCKER_HUB
    ? r.repository.replace(/^library\//, "")
    : `${r.host}/${r.repository}`;
  if (r.tag) repo += `:${r.tag}`;
  if (r.digest) repo += `@${r.digest}`;
  return repo;
}
