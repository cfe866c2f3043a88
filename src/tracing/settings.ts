/**
 * Tracing settings: containerd's two config sections for the daemon, the
 * OpenTelemetry environment variables for shims (which is how a daemon,
 * berth's or containerd, hands them on), and the tracer they make.
 * @module
 */

import { BatchSink, fileExporter, otlpHttpExporter } from "./export.ts";
import { routeSinks } from "./route.ts";
import { type SpanSink, Tracer } from "./span.ts";

/** The config section of the exporter, as containerd names it. */
export const OTLP_SECTION = "io.containerd.tracing.processor.v1.otlp";
/** The config section of sampling and the service name, as containerd names it. */
export const TRACING_SECTION = "io.containerd.internal.v1.tracing";
/** The one OTLP protocol berth speaks. */
export const PROTOCOL_JSON = "http/json";

/** What a process's tracer is made from. */
export interface TracingSettings {
  /** The full OTLP/HTTP traces URL (…/v1/traces); empty: no exporter. */
  url: string;
  /** Share of new traces recorded (0..1); sampled incoming traces are always recorded. */
  ratio: number;
  /** service.name of this process's spans. */
  service: string;
  /** With no URL: the JSON-lines file spans go to; empty: none. */
  file: string;
}

/** Throws for an OTLP protocol berth does not export. */
export function checkProtocol(protocol: string): void {
  if (protocol === "" || protocol === PROTOCOL_JSON) return;
  throw new Error(
    `OTLP protocol ${
      JSON.stringify(protocol)
    } is not supported by berth: it exports OTLP/HTTP JSON (protocol = "${PROTOCOL_JSON}")`,
  );
}

/**
 * The traces URL for containerd's `endpoint` (host:port, as its OTLP/HTTP
 * exporter takes it, https unless `insecure`) or a full http(s) URL.
 */
export function tracesUrl(endpoint: string, insecure: boolean): string {
  const base = endpoint.includes("://") ? endpoint : `${insecure ? "http" : "https"}://${endpoint}`;
  let u: URL;
  try {
    u = new URL(base);
  } catch {
    throw new Error(`OTLP endpoint ${JSON.stringify(endpoint)} is not a host:port or URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new Error(`OTLP endpoint ${JSON.stringify(endpoint)}: only http and https are supported`);
  }
  if (!u.pathname.endsWith("/v1/traces")) u.pathname = u.pathname.replace(/\/$/, "") + "/v1/traces";
  return u.toString();
}

/** The two config sections as parsed TOML tables (either may be absent). */
export interface TracingConfig {
  otlp?: { endpoint?: unknown; protocol?: unknown; insecure?: unknown };
  tracing?: { sampling_ratio?: unknown; service_name?: unknown };
}

/**
 * The daemon's settings from its config: the exporter section decides the
 * URL; with none, spans of sampled requests go to `defaultFile`. The ratio
 * defaults to containerd's 1.0 when an endpoint is set, else 0 (only
 * requests that arrive sampled, e.g. from `berth trace`).
 */
export function settingsFromConfig(cfg: TracingConfig, defaultFile: string): TracingSettings {
  const endpoint = String(cfg.otlp?.endpoint ?? "");
  checkProtocol(String(cfg.otlp?.protocol ?? ""));
  const url = endpoint === "" ? "" : tracesUrl(endpoint, cfg.otlp?.insecure === true);
  const rawRatio = cfg.tracing?.sampling_ratio;
  const ratio = rawRatio === undefined ? (url === "" ? 0 : 1) : Number(rawRatio);
  if (!(ratio >= 0 && ratio <= 1)) {
    throw new Error(`sampling_ratio must be between 0 and 1, not ${String(rawRatio)}`);
  }
  return {
    url,
    ratio,
    service: String(cfg.tracing?.service_name ?? "") || "berth",
    file: url === "" ? defaultFile : "",
  };
}

/** Environment variable naming the JSON-lines trace file (berth's own). */
export const ENV_FILE = "BERTH_TRACE_FILE";

/** The environment that hands `s` on to a shim (OpenTelemetry's variable names). */
export function settingsEnv(s: TracingSettings): Record<string, string> {
  const env: Record<string, string> = {
    OTEL_TRACES_SAMPLER: "parentbased_traceidratio",
    OTEL_TRACES_SAMPLER_ARG: String(s.ratio),
  };
  if (s.url !== "") {
    env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = s.url;
    env.OTEL_EXPORTER_OTLP_TRACES_PROTOCOL = PROTOCOL_JSON;
  }
  if (s.file !== "") env[ENV_FILE] = s.file;
  return env;
}

/** The environment variables {@link settingsFromEnv} reads (a spare shim copies them). */
export const TRACING_ENV_KEYS: readonly string[] = [
  "OTEL_EXPORTER_OTLP_ENDPOINT",
  "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
  "OTEL_EXPORTER_OTLP_PROTOCOL",
  "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
  "OTEL_TRACES_SAMPLER",
  "OTEL_TRACES_SAMPLER_ARG",
  "OTEL_SERVICE_NAME",
  ENV_FILE,
];

function samplerRatio(sampler: string | undefined, arg: string | undefined): number {
  switch (sampler ?? "parentbased_always_on") {
    case "always_on":
    case "parentbased_always_on":
      return 1;
    case "always_off":
    case "parentbased_always_off":
      return 0;
    case "traceidratio":
    case "parentbased_traceidratio": {
      const r = Number(arg ?? "1");
      return r >= 0 && r <= 1 ? r : 1;
    }
    default:
      throw new Error(`OTEL_TRACES_SAMPLER ${JSON.stringify(sampler)} is not supported`);
  }
}

/**
 * Settings from the OpenTelemetry environment (a shim's, as its daemon set
 * it); undefined when it asks for nothing (no endpoint, no file), so such
 * a process has no tracer at all.
 */
export function settingsFromEnv(
  get: (key: string) => string | undefined,
  service: string,
): TracingSettings | undefined {
  const traces = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") ?? "";
  const base = get("OTEL_EXPORTER_OTLP_ENDPOINT") ?? "";
  const file = get(ENV_FILE) ?? "";
  if (traces === "" && base === "" && file === "") return undefined;
  checkProtocol(
    get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") ?? get("OTEL_EXPORTER_OTLP_PROTOCOL") ?? "",
  );
  // The signal-specific variable is the full URL; the base one gets /v1/traces appended.
  const url = traces !== "" ? traces : base === "" ? "" : tracesUrl(base, true);
  return {
    url,
    ratio: samplerRatio(get("OTEL_TRACES_SAMPLER"), get("OTEL_TRACES_SAMPLER_ARG")),
    service: get("OTEL_SERVICE_NAME") || service,
    file: url === "" ? file : "",
  };
}

/** The tracer for `s`: its exporter (URL or file) and per-trace routes. */
export function makeTracer(s: TracingSettings, version = ""): Tracer {
  const sinks: SpanSink[] = [];
  if (s.url !== "") sinks.push(new BatchSink(otlpHttpExporter(s.url, s.service, version)));
  else if (s.file !== "") sinks.push(new BatchSink(fileExporter(s.file, s.service, version)));
  return new Tracer({
    service: s.service,
    sinks,
    ratio: s.ratio,
    route: routeSinks(s.service, version),
  });
}
