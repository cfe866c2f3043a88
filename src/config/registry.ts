// The CRI plugin's registry settings, in containerd 1.6's TOML shape:
// `[plugins."io.containerd.grpc.v1.cri".registry]` with `mirrors."<host>"`
// (endpoints tried in order) and `configs."<host>"` (TLS and credentials
// for requests to that host).

import { invalidArgument } from "../errdefs/mod.ts";
import { bool, ignored, list, map, type Shape, str, table } from "./shape.ts";

/** TLS settings for one registry host (`configs."<host>".tls`). */
export interface RegistryTls {
  insecure_skip_verify: boolean;
  /** PEM CA bundle trusted in addition to the system's. */
  ca_file: string;
  /** PEM client certificate and its key (both or neither). */
  cert_file: string;
  key_file: string;
}

/** Credentials for one registry host (`configs."<host>".auth`). */
export interface RegistryAuth {
  username: string;
  password: string;
  /** base64 of "user:password". */
  auth: string;
  /** An OAuth2 refresh token. */
  identitytoken: string;
}

/** `configs."<host>"`: what requests to that host use. */
export interface RegistryHostConfig {
  tls?: RegistryTls;
  auth?: RegistryAuth;
}

/** The registry table: mirrors and per-host settings, keyed by host (with port). */
export interface RegistryConfig {
  /** Endpoints (URLs, or host[:port] with the default scheme) per host; "*" matches any host. */
  mirrors: Record<string, { endpoint: string[] }>;
  configs: Record<string, RegistryHostConfig>;
}

/** The registry table's keys, for the config's shape. */
export const REGISTRY_SHAPE: Shape = table({
  config_path: ignored(
    "hosts.toml directories are not supported by berth; use mirrors and configs",
  ),
  mirrors: map(table({ endpoint: list(str) }), { endpoint: [] }),
  configs: map(table({
    tls: table({ insecure_skip_verify: bool, ca_file: str, cert_file: str, key_file: str }),
    auth: table({ username: str, password: str, auth: str, identitytoken: str }),
  })),
  headers: ignored("extra registry headers are not supported by berth"),
  auths: ignored("deprecated in containerd; use configs.<host>.auth"),
});

const TLS_DEFAULTS: RegistryTls = {
  insecure_skip_verify: false,
  ca_file: "",
  cert_file: "",
  key_file: "",
};
const AUTH_DEFAULTS: RegistryAuth = { username: "", password: "", auth: "", identitytoken: "" };

/**
 * The registry settings of a parsed CRI section (`section.registry`), with
 * defaults filled in; InvalidArgument (naming the key) for a client
 * certificate without its key, or the other way round.
 */
export function registryFromSection(section: Record<string, unknown> | undefined): RegistryConfig {
  const raw = (section?.registry ?? {}) as Partial<RegistryConfig>;
  const configs: Record<string, RegistryHostConfig> = {};
  for (const [host, c] of Object.entries(raw.configs ?? {})) {
    const out: RegistryHostConfig = {};
    if (c.tls) {
      out.tls = { ...TLS_DEFAULTS, ...c.tls };
      if ((out.tls.cert_file === "") !== (out.tls.key_file === "")) {
        throw invalidArgument(
          `registry.configs.${JSON.stringify(host)}.tls: cert_file and key_file go together`,
        );
      }
    }
    if (c.auth) out.auth = { ...AUTH_DEFAULTS, ...c.auth };
    configs[host] = out;
  }
  const mirrors: Record<string, { endpoint: string[] }> = {};
  for (const [host, m] of Object.entries(raw.mirrors ?? {})) {
    mirrors[host] = { endpoint: [...(m.endpoint ?? [])] };
  }
  return { mirrors, configs };
}
