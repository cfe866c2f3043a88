/**
 * The metrics endpoint: `[metrics] address` serves `/v1/metrics` over HTTP
 * in the Prometheus text format, or OpenMetrics when the scraper's Accept
 * header asks for it. A scrape gathers the daemon's RPC counters (kept by
 * the observers this module gives its servers), every task's cgroup figures
 * (asked of the shims at scrape time) and the process' own figures. The
 * daemon imports this module only when metrics are configured.
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { cgroupFamilies, type TaskMetrics } from "./cgroups.ts";
import {
  type Family,
  OPENMETRICS_TYPE,
  render,
  TEXT_TYPE,
  wantsOpenMetrics,
} from "./exposition.ts";
import { processFamilies } from "./process.ts";
import { RpcMetrics } from "./rpc.ts";

export { type Family, render, type Sample, wantsOpenMetrics } from "./exposition.ts";
export { cgroupFamilies, type TaskMetrics } from "./cgroups.ts";
export { processFamilies } from "./process.ts";
export { RpcMetrics } from "./rpc.ts";

/** The path containerd serves its metrics on. */
export const METRICS_PATH = "/v1/metrics";

/** Options of {@link MetricsEndpoint}. */
export interface MetricsOptions {
  /** Keep per-method latency histograms (containerd's `grpc_histogram`). */
  histogram: boolean;
  /** Every task's figures, gathered at scrape time. */
  tasks: () => Promise<TaskMetrics[]>;
}

/** Counters for the daemon's servers, and the HTTP listener that exposes them. */
export class MetricsEndpoint {
  /** Install `grpc.observe` on the gRPC server. */
  readonly grpc: RpcMetrics;
  /** Install `ttrpc.observe` on the ttrpc server. */
  readonly ttrpc: RpcMetrics;
  #tasks: () => Promise<TaskMetrics[]>;
  #server: Deno.HttpServer<Deno.NetAddr> | undefined;

  /** Counters start at zero; nothing listens until {@link listen}. */
  constructor(opts: MetricsOptions) {
    this.grpc = new RpcMetrics("grpc", opts.histogram);
    this.ttrpc = new RpcMetrics("ttrpc", opts.histogram);
    this.#tasks = opts.tasks;
  }

  /** Every family, gathered now. */
  async families(): Promise<Family[]> {
    let tasks: TaskMetrics[] = [];
    try {
      tasks = await this.#tasks();
    } catch (err) {
      log.warn("metrics: cannot gather task figures", { error: String(err) });
    }
    return [
      ...cgroupFamilies(tasks),
      ...this.grpc.families(),
      ...this.ttrpc.families(),
      ...processFamilies(),
    ];
  }

  /** Serves HTTP on `hostname:port` (port 0: any free one); returns where. */
  listen(hostname: string, port: number): Promise<Deno.NetAddr> {
    return new Promise((resolve, reject) => {
      try {
        this.#server = Deno.serve({
          hostname,
          port,
          onListen: resolve,
          onError: (err) => {
            log.warn("metrics: request failed", { error: String(err) });
            return new Response("internal error\n", { status: 500 });
          },
        }, (req) => this.#handle(req));
      } catch (err) {
        reject(
          new BerthError(
            err instanceof Deno.errors.AddrInUse ? Code.AlreadyExists : Code.InvalidArgument,
            `metrics.address ${hostname}:${port}: ${(err as Error).message}`,
          ),
        );
      }
    });
  }

  async #handle(req: Request): Promise<Response> {
    const url = new URL(req.url);
    if (url.pathname !== METRICS_PATH) {
      return new Response(`not found; metrics are at ${METRICS_PATH}\n`, { status: 404 });
    }
    if (req.method !== "GET" && req.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405, headers: { allow: "GET" } });
    }
    const om = wantsOpenMetrics(req.headers.get("accept"));
    const body = render(await this.families(), om);
    return new Response(req.method === "HEAD" ? null : body, {
      headers: { "content-type": om ? OPENMETRICS_TYPE : TEXT_TYPE },
    });
  }

  /** Stops listening (scrapes in flight finish). */
  async close(): Promise<void> {
    await this.#server?.shutdown();
    this.#server = undefined;
  }
}
