/**
 * The daemon's configuration: containerd's config.toml shape (version 2),
 * its defaults, loading a file with flag overrides, printing as TOML, and
 * the lookups other parts need (the ttrpc address, a runtime by name).
 *
 * @module
 */

// smol-toml: a maintained, dependency-free TOML 1.0 parser and writer that
// runs unchanged in Deno; TOML has corner cases (dotted keys, inline tables,
// table arrays) not worth writing by hand.
import { parse as parseToml, stringify as stringifyToml } from "smol-toml";
import {
  DEFAULT_ADDRESS,
  DEFAULT_ROOT,
  DEFAULT_SNAPSHOTTER,
  DEFAULT_STATE,
  ttrpcSocket,
} from "../defaults/mod.ts";
import { parseGoDuration } from "../duration/mod.ts";
import { BerthError, Code, invalidArgument, notFound } from "../errdefs/mod.ts";
import { any, bool, ignored, int, list, map, merge, num, type Shape, str, table } from "./shape.ts";
import { REGISTRY_SHAPE, type RegistryConfig, registryFromSection } from "./registry.ts";
import {
  OTLP_SECTION,
  settingsFromConfig,
  TRACING_SECTION,
  type TracingConfig,
  type TracingSettings,
} from "../tracing/settings.ts";

/** Where a runtime's shim comes from and what options it is given. */
export interface RuntimeEntry {
  /** containerd runtime type, e.g. "io.containerd.runc.v2"; decides the shim binary's name. */
  runtime_type: string;
  /** Absolute path of the shim binary; empty: `containerd-shim-<name>-<version>` on PATH. */
  runtime_path: string;
  /** Options handed to the shim (for runc shims: BinaryName, SystemdCgroup, ...). */
  options: Record<string, unknown>;
}

/** The daemon's configuration, keyed exactly as in the TOML file. */
export interface Config {
  /** Config format version; berth reads version 2. */
  version: number;
  /** Persistent data (metadata, content, snapshots). */
  root: string;
  /** Runtime state (sockets, bundles); gone after a reboot. */
  state: string;
  /** Scratch space; empty: the system's. */
  temp: string;
  grpc: {
    /** gRPC socket; the ttrpc socket defaults to this plus ".ttrpc". */
    address: string;
    uid: number;
    gid: number;
    max_recv_message_size: number;
    max_send_message_size: number;
    /** Also serve gRPC on TCP at "host:port" (empty: not); plaintext unless tcp_tls_cert/key are set. */
    tcp_address: string;
    /** A CA for verifying clients' certificates: refused, berth's TLS cannot verify clients. */
    tcp_tls_ca: string;
    /** PEM certificate (chain) file for TLS on tcp_address. */
    tcp_tls_cert: string;
    /** PEM private key file for TLS on tcp_address. */
    tcp_tls_key: string;
  };
  ttrpc: {
    /** ttrpc socket; empty: `<grpc.address>.ttrpc`. */
    address: string;
    uid: number;
    gid: number;
  };
  debug: {
    /** trace, debug, info, warn, error or fatal. */
    level: string;
    /** "text" (logrus' key=value lines) or "json". */
    format: string;
    /** The debug socket (heap snapshot, CPU profile, requests in flight); empty: none. */
    address: string;
    /** Owner of the debug socket (it is 0600). */
    uid: number;
    gid: number;
  };
  metrics: {
    /** "host:port" serving /v1/metrics over HTTP; empty: no metrics at all. */
    address: string;
    /** Keep per-method latency histograms of the RPC servers. */
    grpc_histogram: boolean;
  };
  /** Plugin ids or type.id URIs not to load. */
  disabled_plugins: string[];
  /** Plugin URIs that must load, or the daemon does not start. */
  required_plugins: string[];
  /** Written to /proc/self/oom_score_adj when not 0. */
  oom_score: number;
  /** Named timeouts (Go duration strings), e.g. "io.containerd.timeout.shim.shutdown". */
  timeouts: Record<string, string>;
  /** Per-plugin sections, keyed by plugin URI (`<type>.<id>`). */
  plugins: Record<string, Record<string, unknown>>;
}

/** The URI of the section holding the runtimes table and default snapshotter (containerd's CRI section). */
export const CRI_SECTION = "io.containerd.grpc.v1.cri";

/** The runtime containers get when they name none. */
export const DEFAULT_RUNTIME = "io.containerd.berth.v2";

const runtimeShape = table({
  runtime_type: str,
  runtime_path: str,
  options: any,
}, ignored("a CRI runtime setting berth does not use"));

const NOT_SERVED = "not supported by berth";

/** Every key berth reads, with its type; containerd keys berth does not act on warn. */
const CONFIG_SHAPE: Shape = table({
  version: int,
  root: str,
  state: str,
  temp: str,
  plugin_dir: ignored("external plugins are " + NOT_SERVED),
  grpc: table({
    address: str,
    uid: int,
    gid: int,
    max_recv_message_size: int,
    max_send_message_size: int,
    tcp_address: str,
    tcp_tls_ca: str,
    tcp_tls_cert: str,
    tcp_tls_key: str,
  }),
  ttrpc: table({ address: str, uid: int, gid: int }),
  debug: table({
    level: str,
    format: str,
    address: str,
    uid: int,
    gid: int,
  }),
  metrics: table({ address: str, grpc_histogram: bool }),
  cgroup: ignored("a cgroup for the daemon is " + NOT_SERVED),
  proxy_plugins: ignored("proxy plugins are " + NOT_SERVED),
  stream_processors: ignored("stream processors are " + NOT_SERVED),
  imports: ignored("config imports are " + NOT_SERVED),
  disabled_plugins: list(str),
  required_plugins: list(str),
  oom_score: int,
  timeouts: map(str),
  plugins: table({
    [CRI_SECTION]: table({
      sandbox_image: str,
      stream_server_address: str,
      stream_server_port: str,
      restrict_oom_score_adj: bool,
      netns_mounts_under_state_dir: bool,
      cni: table(
        { bin_dir: str, conf_dir: str, max_conf_num: int, conf_template: str },
        ignored(
          "a CNI setting berth does not use",
        ),
      ),
      containerd: table(
        {
          snapshotter: str,
          default_runtime_name: str,
          runtimes: map(runtimeShape, { runtime_type: "", runtime_path: "", options: {} }),
        },
        ignored("a CRI setting berth does not use"),
      ),
      registry: REGISTRY_SHAPE,
    }, ignored("a CRI setting berth does not use")),
    "io.containerd.runtime.v2.task": table({
      platforms: list(str),
      sched_core: bool,
      shim_group_size: int,
      shim_idle_timeout: str,
      shim_socket_dir: str,
    }),
    "io.containerd.gc.v1.scheduler": table({
      pause_threshold: num,
      deletion_threshold: int,
      mutation_threshold: int,
      schedule_delay: str,
      startup_delay: str,
    }),
    "io.containerd.snapshotter.v1.overlayfs": table({ root_path: str, upperdir_label: bool }),
    "io.containerd.snapshotter.v1.native": table({ root_path: str }),
    [OTLP_SECTION]: table({ endpoint: str, protocol: str, insecure: bool }),
    [TRACING_SECTION]: table({ sampling_ratio: num, service_name: str }),
  }, any),
});

/**
 * The daemon's tracing settings from containerd's two sections (exporter;
 * sampling and service name); with no endpoint, spans of sampled requests
 * go to `<state>/traces.jsonl`. A bad value is InvalidArgument naming it.
 */
export function tracingSettings(cfg: Config): TracingSettings {
  const sections: TracingConfig = {
    otlp: cfg.plugins[OTLP_SECTION] as TracingConfig["otlp"],
    tracing: cfg.plugins[TRACING_SECTION] as TracingConfig["tracing"],
  };
  try {
    return settingsFromConfig(sections, `${cfg.state}/traces.jsonl`);
  } catch (err) {
    throw invalidArgument(`tracing config: ${(err as Error).message}`);
  }
}

/** Plugin sections whose keys this module describes (a plugin may not exist for each yet). */
export const DESCRIBED_PLUGIN_SECTIONS: readonly string[] = Object.keys(
  ((CONFIG_SHAPE as { fields: Record<string, Shape> }).fields.plugins as {
    fields: Record<string, Shape>;
  }).fields,
);

/** The configuration a daemon runs with when given no file and no flags. */
export function defaultConfig(): Config {
  return {
    version: 2,
    root: DEFAULT_ROOT,
    state: DEFAULT_STATE,
    temp: "",
    grpc: {
      address: DEFAULT_ADDRESS,
      uid: 0,
      gid: 0,
      max_recv_message_size: 16 << 20,
      max_send_message_size: 16 << 20,
      tcp_address: "",
      tcp_tls_ca: "",
      tcp_tls_cert: "",
      tcp_tls_key: "",
    },
    ttrpc: { address: "", uid: 0, gid: 0 },
    debug: { level: "info", format: "text", address: "", uid: 0, gid: 0 },
    metrics: { address: "", grpc_histogram: false },
    disabled_plugins: [],
    required_plugins: [],
    oom_score: 0,
    timeouts: {
      "io.containerd.timeout.shim.cleanup": "5s",
      "io.containerd.timeout.shim.load": "5s",
      "io.containerd.timeout.shim.shutdown": "3s",
      "io.containerd.timeout.task.state": "2s",
    },
    plugins: {
      [CRI_SECTION]: {
        containerd: {
          snapshotter: DEFAULT_SNAPSHOTTER,
          default_runtime_name: "berth",
          runtimes: {
            berth: { runtime_type: DEFAULT_RUNTIME, runtime_path: "", options: {} },
            runc: { runtime_type: "io.containerd.runc.v2", runtime_path: "", options: {} },
          },
        },
      },
      "io.containerd.runtime.v2.task": {
        platforms: ["linux/amd64"],
        sched_core: false,
        // berth's: containers of a namespace share a shim, up to this many (0: one each).
        shim_group_size: 32,
        // berth's: how long an emptied shared shim waits for the next container.
        shim_idle_timeout: "10s",
        // berth's: where berth's shims put their sockets (empty: <state>/s, or /run/berth/s
        // when that path is too long for a unix socket).
        shim_socket_dir: "",
      },
      "io.containerd.gc.v1.scheduler": {
        pause_threshold: 0.02,
        deletion_threshold: 0,
        mutation_threshold: 100,
        schedule_delay: "0s",
        startup_delay: "100ms",
      },
      "io.containerd.snapshotter.v1.overlayfs": { root_path: "", upperdir_label: false },
      "io.containerd.snapshotter.v1.native": { root_path: "" },
    },
  };
}

/** Values given on the command line; each replaces the file's. */
export interface ConfigOverrides {
  root?: string;
  state?: string;
  /** The gRPC address; the ttrpc one follows it unless the file sets it. */
  address?: string;
  logLevel?: string;
}

/** A loaded configuration and what was noticed on the way. */
export interface LoadedConfig {
  config: Config;
  /** Unknown or unsupported keys, one message each, for the caller to log. */
  warnings: string[];
}

const LEVELS = ["trace", "debug", "info", "warn", "error", "fatal"];

/**
 * Parses TOML text (named `source` in messages) over the defaults. Throws
 * InvalidArgument on a TOML syntax error, a wrong type (naming the key) or
 * an unsupported version; unknown keys become warnings.
 */
export function parseConfig(text: string, source = "config"): LoadedConfig {
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(text) as Record<string, unknown>;
  } catch (err) {
    throw invalidArgument(`${source}: ${(err as Error).message}`);
  }
  const warnings: string[] = [];
  if (doc.version === undefined) {
    warnings.push(`${source}: no "version"; reading it as version 2`);
  } else if (doc.version !== 2) {
    throw invalidArgument(
      `${source}: version: berth reads version 2 configs, got ${JSON.stringify(doc.version)}` +
        ` (convert with containerd's \`containerd config migrate\`)`,
    );
  }
  let config: Config;
  try {
    config = merge(defaultConfig(), doc, CONFIG_SHAPE, [], warnings) as Config;
  } catch (err) {
    if (err instanceof BerthError) throw new BerthError(err.code, `${source}: ${err.message}`);
    throw err;
  }
  validate(config, source);
  return { config, warnings: warnings.map((w) => w.startsWith(source) ? w : `${source}: ${w}`) };
}

function validate(c: Config, source: string): void {
  const bad = (key: string, why: string) => invalidArgument(`${source}: ${key}: ${why}`);
  if (!LEVELS.includes(c.debug.level)) {
    throw bad(
      "debug.level",
      `unknown level ${JSON.stringify(c.debug.level)} (${LEVELS.join(", ")})`,
    );
  }
  if (c.debug.format !== "text" && c.debug.format !== "json") {
    throw bad("debug.format", `expected "text" or "json", got ${JSON.stringify(c.debug.format)}`);
  }
  for (const key of ["root", "state"] as const) {
    if (!c[key].startsWith("/")) {
      throw bad(key, `must be an absolute path, got ${JSON.stringify(c[key])}`);
    }
  }
  if (c.root === c.state) throw bad("state", "must differ from root");
  try {
    registryConfig(c);
  } catch (err) {
    throw bad(`plugins.${JSON.stringify(CRI_SECTION)}`, (err as Error).message);
  }
  if (c.metrics.address !== "") {
    try {
      parseTcpAddress(c.metrics.address);
    } catch (err) {
      throw bad("metrics.address", (err as Error).message);
    }
  }
  if (c.debug.address !== "" && !c.debug.address.replace(/^unix:\/\//, "").startsWith("/")) {
    throw bad(
      "debug.address",
      `must be an absolute socket path, got ${JSON.stringify(c.debug.address)}`,
    );
  }
  if (c.grpc.address === "") throw bad("grpc.address", "must not be empty");
  if (c.grpc.tcp_address !== "") {
    try {
      parseTcpAddress(c.grpc.tcp_address);
    } catch (err) {
      throw bad("grpc.tcp_address", (err as Error).message);
    }
    if ((c.grpc.tcp_tls_cert === "") !== (c.grpc.tcp_tls_key === "")) {
      throw bad("grpc.tcp_tls_cert", "tcp_tls_cert and tcp_tls_key go together");
    }
    if (c.grpc.tcp_tls_ca !== "") {
      // Deno's TLS server cannot ask for and verify client certificates:
      // serving without the check the config asks for would be worse than not starting.
      throw bad(
        "grpc.tcp_tls_ca",
        "verifying client certificates (mutual TLS) is not supported by berth; remove it to serve TLS without client certificates",
      );
    }
  }
}

/** A TCP listen address as containerd's `grpc.tcp_address` writes it. */
export interface TcpAddress {
  /** An IP address or host name; "0.0.0.0" when the address names none (":port"). */
  hostname: string;
  port: number;
}

/**
 * Parses "host:port", "[v6]:port" or ":port" (every interface);
 * InvalidArgument otherwise.
 */
export function parseTcpAddress(text: string): TcpAddress {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]\s]*)):(\d{1,5})$/.exec(text);
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) {
    throw invalidArgument(
      `${JSON.stringify(text)} is not a TCP address (like "127.0.0.1:1234", "[::1]:1234", ":1234")`,
    );
  }
  return { hostname: m[1] ?? (m[2] || "0.0.0.0"), port };
}

/**
 * Reads the config file at `path` (a missing file is an error: the caller
 * asked for it) and applies `overrides`.
 */
export async function loadConfig(
  path: string | undefined,
  overrides: ConfigOverrides = {},
): Promise<LoadedConfig> {
  let loaded: LoadedConfig = { config: defaultConfig(), warnings: [] };
  if (path !== undefined) {
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw notFound(`config file ${path}`);
      throw new BerthError(Code.InvalidArgument, `config file ${path}: ${(err as Error).message}`);
    }
    loaded = parseConfig(text, path);
  }
  return { config: applyOverrides(loaded.config, overrides), warnings: loaded.warnings };
}

/** `config` with command-line values put in, checked as a file's would be. */
export function applyOverrides(config: Config, o: ConfigOverrides): Config {
  const c = structuredClone(config);
  if (o.root !== undefined) c.root = o.root;
  if (o.state !== undefined) c.state = o.state;
  if (o.address !== undefined) c.grpc.address = o.address;
  if (o.logLevel !== undefined) c.debug.level = o.logLevel;
  validate(c, "flags");
  return c;
}

/** The ttrpc socket path: `ttrpc.address`, else `<grpc.address>.ttrpc` as containerd does. */
export function ttrpcAddress(c: Config): string {
  return c.ttrpc.address !== "" ? c.ttrpc.address : ttrpcSocket(c.grpc.address);
}

/** The configuration with derived values filled in (what `berth config dump` prints). */
export function effectiveConfig(c: Config): Config {
  const out = structuredClone(c);
  out.ttrpc.address = ttrpcAddress(c);
  return out;
}

/** The config as TOML text, in containerd's layout. */
export function configToToml(c: Config): string {
  return stringifyToml(c as unknown as Record<string, unknown>);
}

/** The CRI section's `containerd` table, where runtimes and the snapshotter live. */
function criContainerd(
  c: Config,
): { snapshotter: string; default_runtime_name: string; runtimes: Record<string, RuntimeEntry> } {
  const section = c.plugins[CRI_SECTION] as { containerd?: Record<string, unknown> } | undefined;
  const t = section?.containerd ?? {};
  return {
    snapshotter: (t.snapshotter as string | undefined) || DEFAULT_SNAPSHOTTER,
    default_runtime_name: (t.default_runtime_name as string | undefined) ?? "",
    runtimes: (t.runtimes as Record<string, RuntimeEntry> | undefined) ?? {},
  };
}

/** The CRI plugin's registry mirrors and per-host TLS and credentials. */
export function registryConfig(c: Config): RegistryConfig {
  return registryFromSection(c.plugins[CRI_SECTION]);
}

/** The snapshotter used when a request names none. */
export function defaultSnapshotter(c: Config): string {
  return criContainerd(c).snapshotter;
}

/** A runtime resolved to the shim that serves it. */
export interface ResolvedRuntime {
  /** The name it was asked for (a table key or a runtime type). */
  name: string;
  /** containerd runtime type, e.g. "io.containerd.runc.v2". */
  runtimeType: string;
  /** The shim binary: an absolute path, or a name to find on PATH. */
  binary: string;
  /** Options from the runtimes table (empty when the name was not in it). */
  options: Record<string, unknown>;
}

const RUNTIME_TYPE_RE = /^io\.containerd\.([A-Za-z0-9_-]+)\.(v[0-9]+)$/;

/**
 * The shim binary's name for a runtime type, by containerd's rule:
 * `io.containerd.runc.v2` -> `containerd-shim-runc-v2`.
 */
export function shimBinaryName(runtimeType: string): string {
  const m = RUNTIME_TYPE_RE.exec(runtimeType);
  if (!m) {
    throw invalidArgument(
      `runtime ${
        JSON.stringify(runtimeType)
      }: not a runtime type of the form io.containerd.<name>.<version>`,
    );
  }
  return `containerd-shim-${m[1]}-${m[2]}`;
}

/**
 * Finds runtime `name` (empty: the default runtime): a key of the runtimes
 * table, else an entry whose runtime_type is `name`, else `name` itself read
 * as a runtime type (as containerd does for `ctr run --runtime`).
 */
export function resolveRuntime(c: Config, name = ""): ResolvedRuntime {
  const cri = criContainerd(c);
  const wanted = name !== "" ? name : (cri.default_runtime_name || DEFAULT_RUNTIME);
  let entry: RuntimeEntry | undefined = cri.runtimes[wanted];
  if (entry === undefined) {
    entry = Object.values(cri.runtimes).find((r) => r.runtime_type === wanted);
  }
  const runtimeType = entry?.runtime_type || wanted;
  if (entry === undefined && !RUNTIME_TYPE_RE.test(wanted)) {
    throw notFound(
      `runtime ${JSON.stringify(wanted)} (not in the runtimes table, not a runtime type)`,
    );
  }
  return {
    name: wanted,
    runtimeType,
    binary: entry?.runtime_path || shimBinaryName(runtimeType),
    options: entry?.options ?? {},
  };
}

/**
 * Milliseconds in a Go duration string as containerd's config writes them
 * ("100ms", "1m30s", "0s", "0"); `key` names the setting in the error.
 */
export function parseDuration(text: string, key = "duration"): number {
  if (text === "0") return 0;
  const ms = parseGoDuration(text);
  if (ms === undefined) {
    throw invalidArgument(
      `${key}: ${JSON.stringify(text)} is not a duration (like "100ms", "5s", "1m30s")`,
    );
  }
  return ms;
}
