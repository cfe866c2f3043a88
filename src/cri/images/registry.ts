// From the CRI registry config and a pull's AuthConfig to the endpoints a
// pull tries: mirrors in order, then the host itself (containerd 1.6's
// rules: "*" mirrors any host, a scheme-less endpoint is http for loopback
// and https otherwise, the path defaults to /v2), each with its host's TLS
// settings and credentials.

import type { RegistryAuth, RegistryConfig } from "../../config/mod.ts";
import { invalidArgument, unimplemented } from "../../errdefs/mod.ts";
import type { AuthConfig } from "../../gen/k8s/cri/runtime/v1/api_pb.ts";
import type { RegistryOptions } from "../../images/mod.ts";

/** A pull's credentials as the CRI sends them (runtime.v1.AuthConfig's fields). */
export type AuthInput = Omit<AuthConfig, "$typeName" | "$unknown">;

/** True for "localhost" and loopback addresses, with or without a port. */
export function isLocalhost(host: string): boolean {
  let name = host;
  const v6 = /^\[(.*)\](?::\d+)?$/.exec(host);
  if (v6) name = v6[1];
  else if (host.includes(":") && host.indexOf(":") === host.lastIndexOf(":")) {
    name = host.slice(0, host.indexOf(":"));
  }
  return name === "localhost" || name === "::1" || /^127\.\d+\.\d+\.\d+$/.test(name);
}

function defaultScheme(host: string): string {
  return isLocalhost(host) ? "http" : "https";
}

function parseEndpoint(e: string): URL {
  const text = e.includes("://") ? e : `${defaultScheme(e.split("/")[0])}://${e}`;
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw invalidArgument(`registry mirror endpoint ${JSON.stringify(e)} is not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw invalidArgument(`registry mirror endpoint ${JSON.stringify(e)}: http or https only`);
  }
  return u;
}

/**
 * The API roots a pull of an image on `host` tries, in order: the host's
 * mirrors (else the "*" mirrors), then the host itself unless a mirror is
 * the host already. E.g. "http://127.0.0.1:5000/v2".
 */
export function registryEndpoints(cfg: RegistryConfig, host: string): string[] {
  const mirrors = (cfg.mirrors[host] ?? cfg.mirrors["*"])?.endpoint ?? [];
  const urls = mirrors.map(parseEndpoint);
  // Docker Hub's API lives on another host than its names.
  const own = host === "docker.io" ? "registry-1.docker.io" : host;
  if (!urls.some((u) => u.host === host)) urls.push(new URL(`${defaultScheme(own)}://${own}`));
  return urls.map((u) => {
    const path = u.pathname.replace(/\/+$/, "");
    return `${u.protocol}//${u.host}${path === "" ? "/v2" : path}`;
  });
}

function decodeAuth(auth: string): { username: string; password: string } {
  let text: string;
  try {
    text = new TextDecoder().decode(Uint8Array.from(atob(auth), (c) => c.charCodeAt(0)));
  } catch {
    throw invalidArgument("auth: not base64");
  }
  const colon = text.indexOf(":");
  if (colon < 0) throw invalidArgument("auth: decoded credentials are not user:password");
  return { username: text.slice(0, colon), password: text.slice(colon + 1).replace(/\0+$/, "") };
}

/**
 * The credentials `auth` gives for requests to `host`: none when it names
 * another server (server_address), else username/password, the identity
 * token, the base64 `auth` pair, or the registry token, first found first.
 */
export function credentialsFor(
  auth: Partial<AuthInput> | undefined,
  host: string,
): RegistryOptions {
  if (!auth) return {};
  if (auth.serverAddress) {
    const a = auth.serverAddress;
    const named = a.includes("://") ? new URL(a).host : a.split("/")[0];
    if (named !== host) return {};
  }
  if (auth.username) return { username: auth.username, password: auth.password ?? "" };
  if (auth.identityToken) return { identityToken: auth.identityToken };
  if (auth.auth) return decodeAuth(auth.auth);
  if (auth.registryToken) return { registryToken: auth.registryToken };
  return {};
}

function fromConfig(a: RegistryAuth): Partial<AuthInput> {
  return {
    username: a.username,
    password: a.password,
    auth: a.auth,
    identityToken: a.identitytoken,
  };
}

/** Settings of one endpoint, and the HTTP client made for it (close it after the pull). */
export interface EndpointOptions {
  options: RegistryOptions;
  client?: Deno.HttpClient;
}

/**
 * What requests to API root `url` use: its host's TLS settings (a CA and
 * a client certificate through a dedicated HTTP client) and credentials
 * (the pull's own, else the host's from the config). Skipping certificate
 * verification is Unimplemented: Deno's fetch verifies every TLS
 * connection and offers no per-client switch.
 */
export async function endpointOptions(
  cfg: RegistryConfig,
  url: string,
  auth: Partial<AuthInput> | undefined,
): Promise<EndpointOptions> {
  const u = new URL(url);
  const host = cfg.configs[u.host];
  const creds = credentialsFor(auth ?? (host?.auth && fromConfig(host.auth)), u.host);
  const options: RegistryOptions = { endpoint: url, ...creds };
  const tls = host?.tls;
  if (u.protocol !== "https:" || !tls) return { options };
  if (tls.insecure_skip_verify) {
    throw unimplemented(
      `registry ${u.host}: insecure_skip_verify is not supported by berth (Deno's fetch always ` +
        `verifies certificates); give the registry's CA in ca_file, or use an http:// endpoint`,
    );
  }
  const read = async (key: string, path: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (err) {
      throw invalidArgument(`registry ${u.host}: tls.${key} ${path}: ${(err as Error).message}`);
    }
  };
  const ca = tls.ca_file ? [await read("ca_file", tls.ca_file)] : undefined;
  const pair = tls.cert_file
    ? { cert: await read("cert_file", tls.cert_file), key: await read("key_file", tls.key_file) }
    : undefined;
  if (!ca && !pair) return { options };
  let client: Deno.HttpClient;
  try {
    client = Deno.createHttpClient({ ...(ca ? { caCerts: ca } : {}), ...(pair ?? {}) });
  } catch (err) {
    throw invalidArgument(`registry ${u.host}: TLS settings: ${(err as Error).message}`);
  }
  return { options: { ...options, client }, client };
}
