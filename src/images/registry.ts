// A client of the OCI distribution API, enough to pull: manifests with
// content negotiation, blobs with Range, and the two ways registries ask
// callers to authenticate (a bearer token from the realm named in the
// WWW-Authenticate challenge, or HTTP basic).

import { digestOf } from "../content/mod.ts";
import {
  BerthError,
  Code,
  failedPrecondition,
  invalidArgument,
  notFound,
  unavailable,
} from "../errdefs/mod.ts";
import type { Descriptor } from "./backend.ts";
import {
  DOCKER_MANIFEST,
  DOCKER_MANIFEST_LIST,
  OCI_INDEX,
  OCI_MANIFEST,
  sniffMediaType,
} from "./mediatypes.ts";
import type { Reference } from "./reference.ts";

/** How to reach and authenticate to a registry. */
export interface RegistryOptions {
  /** Speak http:// instead of https:// (loopback test registries). */
  plainHttp?: boolean;
  /**
   * The API root to send requests to instead of the reference's own host
   * (a mirror), e.g. "http://127.0.0.1:5000/v2"; the repository is appended.
   */
  endpoint?: string;
  /** The HTTP client for every request (TLS settings: CA, client certificate). */
  client?: Deno.HttpClient;
  /** Credentials for basic auth or for the token service. */
  username?: string;
  password?: string;
  /** An OAuth2 refresh token, exchanged at the token service for an access token. */
  identityToken?: string;
  /** A bearer token sent as it is, before any challenge. */
  registryToken?: string;
}

/** What manifest requests accept, best first. */
export const MANIFEST_ACCEPT = [
  OCI_INDEX,
  OCI_MANIFEST,
  DOCKER_MANIFEST_LIST,
  DOCKER_MANIFEST,
  "*/*",
].join(", ");

const MAX_MANIFEST_SIZE = 4 << 20;

/** One challenge of a WWW-Authenticate header. */
export interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parses a WWW-Authenticate header (`Bearer realm="...",service="...",scope="..."`). */
export function parseChallenges(header: string): Challenge[] {
  const out: Challenge[] = [];
  // Tokens are either a scheme (a bare word) or a key=value parameter of the scheme before it.
  const token = /\s*([\w-]+)(?:\s*=\s*("(?:[^"\\]|\\.)*"|[^,\s]*))?\s*,?/g;
  for (const m of header.matchAll(token)) {
    const [, word, value] = m;
    if (value === undefined) {
      out.push({ scheme: word.toLowerCase(), params: {} });
    } else if (out.length > 0) {
      const v = value.startsWith('"') ? value.slice(1, -1).replace(/\\(.)/g, "$1") : value;
      out[out.length - 1].params[word.toLowerCase()] = v;
    }
  }
  return out;
}

function basicAuth(user: string, pass: string): string {
  const bytes = new TextEncoder().encode(`${user}:${pass}`);
  return `Basic ${btoa(String.fromCharCode(...bytes))}`;
}

// Deno's fetch says only "fetch failed"; the reason (refused, a certificate) is its cause.
function fetchFailure(err: unknown): string {
  const e = err as Error;
  const cause = e.cause instanceof Error ? e.cause.message : "";
  return cause && !e.message.includes(cause) ? `${e.message}: ${cause}` : e.message;
}

async function drain(res: Response): Promise<void> {
  await res.body?.cancel().catch(() => {});
}

function httpError(res: Response, what: string): BerthError {
  const msg = `${what}: ${res.status} ${res.statusText}`;
  if (res.status === 404) return notFound(msg);
  if (res.status === 401 || res.status === 403) return new BerthError(Code.PermissionDenied, msg);
  if (res.status === 429 || res.status >= 500) return unavailable(msg);
  return failedPrecondition(msg);
}

/** A registry repository, with its authorization remembered across requests. */
export class RegistryClient {
  private authorization: string | undefined;
  /** The repository's API root, e.g. "http://127.0.0.1:5000/v2/busybox". */
  readonly base: string;

  /** A client of `ref`'s repository; nothing is sent until a request is made. */
  constructor(
    readonly ref: Pick<Reference, "host" | "repository">,
    readonly opts: RegistryOptions = {},
  ) {
    // Docker Hub's API lives on another host than its names.
    const host = ref.host === "docker.io" ? "registry-1.docker.io" : ref.host;
    const root = opts.endpoint?.replace(/\/+$/, "") ??
      `${opts.plainHttp ? "http" : "https"}://${host}/v2`;
    this.base = `${root}/${ref.repository}`;
    if (opts.registryToken) this.authorization = `Bearer ${opts.registryToken}`;
  }

  /** The host requests go to (the mirror's when an endpoint is set). */
  get host(): string {
    return new URL(this.base).host;
  }

  private fetch(input: string | URL, init: RequestInit = {}): Promise<Response> {
    return fetch(input, this.opts.client ? { ...init, client: this.opts.client } : init);
  }

  /**
   * GET `path` (under /v2/<repository>), answering one authentication
   * challenge if the registry sends one.
   */
  async get(path: string, headers: Record<string, string> = {}): Promise<Response> {
    const url = `${this.base}${path}`;
    const send = () =>
      this.fetch(url, {
        headers: {
          ...headers,
          ...(this.authorization ? { Authorization: this.authorization } : {}),
        },
      }).catch((err) => {
        throw unavailable(`GET ${url}: ${fetchFailure(err)}`, err);
      });
    let res = await send();
    if (res.status !== 401) return res;
    const challenge = res.headers.get("www-authenticate") ?? "";
    await drain(res);
    await this.authenticate(challenge);
    res = await send();
    return res;
  }

  private async authenticate(header: string): Promise<void> {
    const challenges = parseChallenges(header);
    const bearer = challenges.find((c) => c.scheme === "bearer");
    const { username, identityToken } = this.opts;
    // An identity token stands in for the password, as docker's clients use it.
    const password = this.opts.password ?? identityToken;
    if (bearer) {
      const realm = bearer.params.realm;
      if (!realm) throw invalidArgument(`registry bearer challenge without realm: ${header}`);
      const u = new URL(realm);
      const scope = bearer.params.scope || `repository:${this.ref.repository}:pull`;
      let init: RequestInit;
      if (identityToken && !username) {
        // The OAuth2 refresh-token grant: the token service trades it for an access token.
        const form = new URLSearchParams({
          grant_type: "refresh_token",
          refresh_token: identityToken,
          client_id: "berth",
          scope,
        });
        if (bearer.params.service) form.set("service", bearer.params.service);
        init = { method: "POST", body: form };
      } else {
        if (bearer.params.service) u.searchParams.set("service", bearer.params.service);
        u.searchParams.set("scope", scope);
        init = {
          headers: username !== undefined
            ? { Authorization: basicAuth(username, password ?? "") }
            : {},
        };
      }
      const res = await this.fetch(u, init).catch((err) => {
        throw unavailable(`token request to ${u.origin}: ${fetchFailure(err)}`, err);
      });
      if (!res.ok) {
        await drain(res);
        throw httpError(res, `token request to ${u.origin}${u.pathname}`);
      }
      const body = await res.json() as { token?: string; access_token?: string };
      const token = body.token || body.access_token;
      if (!token) throw failedPrecondition(`token service ${u.origin} answered without a token`);
      this.authorization = `Bearer ${token}`;
      return;
    }
    if (challenges.some((c) => c.scheme === "basic")) {
      if (username === undefined && password === undefined) {
        throw new BerthError(
          Code.PermissionDenied,
          `registry ${this.host} wants credentials (basic auth)`,
        );
      }
      this.authorization = basicAuth(username ?? "", password ?? "");
      return;
    }
    throw new BerthError(
      Code.PermissionDenied,
      `registry ${this.host}: unauthorized (${header || "no challenge"})`,
    );
  }

  /**
   * The manifest or index `tagOrDigest` names: its descriptor (digest
   * computed from the bytes and checked against the one asked for or
   * announced) and its bytes.
   */
  async manifest(tagOrDigest: string): Promise<{ desc: Descriptor; bytes: Uint8Array }> {
    const what = `manifest ${this.ref.host}/${this.ref.repository}:${tagOrDigest}`;
    const res = await this.get(`/manifests/${tagOrDigest}`, { Accept: MANIFEST_ACCEPT });
    if (!res.ok) {
      await drain(res);
      throw httpError(res, what);
    }
    const len = Number(res.headers.get("content-length") ?? "0");
    if (len > MAX_MANIFEST_SIZE) {
      await drain(res);
      throw invalidArgument(`${what} is ${len} bytes, too large`);
    }
    const bytes = new Uint8Array(await res.arrayBuffer());
    if (bytes.length > MAX_MANIFEST_SIZE) throw invalidArgument(`${what} is too large`);
    const digest = digestOf(bytes);
    const announced = res.headers.get("docker-content-digest");
    if (tagOrDigest.includes(":") && tagOrDigest !== digest) {
      throw failedPrecondition(`${what}: content has digest ${digest}`);
    }
    if (announced && announced.startsWith("sha256:") && announced !== digest) {
      throw failedPrecondition(`${what}: registry says ${announced}, content has digest ${digest}`);
    }
    let mediaType = (res.headers.get("content-type") ?? "").split(";")[0].trim();
    let doc: Record<string, unknown>;
    try {
      doc = JSON.parse(new TextDecoder().decode(bytes));
    } catch {
      throw invalidArgument(`${what} is not JSON`);
    }
    // Some registries send application/json; the document says what it is.
    if (!mediaType || mediaType === "application/json" || mediaType === "text/plain") {
      mediaType = sniffMediaType(doc as { mediaType?: string });
    }
    if (doc.schemaVersion === 1) {
      throw invalidArgument(`${what}: schema 1 manifests are not supported`);
    }
    return { desc: { mediaType, digest, size: bytes.length }, bytes };
  }

  /** The blob `digest` from byte `offset` on: the response (206 when the registry honoured the Range). */
  async blob(digest: string, offset = 0): Promise<Response> {
    const res = await this.get(`/blobs/${digest}`, offset > 0 ? { Range: `bytes=${offset}-` } : {});
    if (!res.ok) {
      await drain(res);
      throw httpError(res, `blob ${digest}`);
    }
    return res;
  }
}
