/**
 * Request counts and latency per method, named as go-grpc-prometheus names
 * them for containerd's gRPC server (`grpc_server_started_total`,
 * `grpc_server_handled_total`, `grpc_server_handling_seconds`); the ttrpc
 * server's are the same under `ttrpc_server_*` (containerd has none). The
 * latency histogram is kept only with `grpc_histogram = true`, as in
 * containerd; without it no clock is read.
 * @module
 */

import { codeName } from "../errdefs/mod.ts";
import type { CallObserver, MethodEntry } from "../rpc/mod.ts";
import type { Family, Sample } from "./exposition.ts";

/** Prometheus' default buckets (seconds), which go-grpc-prometheus uses. */
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const GRPC_TYPE: Record<MethodEntry["kind"], string> = {
  unary: "unary",
  server_streaming: "server_stream",
  client_streaming: "client_stream",
  bidi_streaming: "bidi_stream",
};

interface MethodStats {
  labels: Record<string, string>;
  started: number;
  /** Code name -> count. */
  handled: Map<string, number>;
  /** Per bucket counts (not cumulative), then +Inf; with sum, when timed. */
  buckets: number[];
  sum: number;
}

/** Counters and histograms of the calls one server handled. */
export class RpcMetrics {
  readonly #prefix: string;
  readonly #timed: boolean;
  // By entry for the per-call lookup; by name so two entries for one method share a series.
  readonly #byEntry = new Map<MethodEntry, MethodStats>();
  readonly #methods = new Map<string, MethodStats>();

  /** `prefix` is "grpc" or "ttrpc"; `histogram` keeps latencies (containerd's grpc_histogram). */
  constructor(prefix: string, histogram: boolean) {
    this.#prefix = prefix;
    this.#timed = histogram;
  }

  #stats(entry: MethodEntry): MethodStats {
    let s = this.#byEntry.get(entry);
    if (s !== undefined) return s;
    const key = `${entry.kind} ${entry.service}/${entry.method}`;
    s = this.#methods.get(key);
    if (s === undefined) {
      s = {
        labels: {
          grpc_type: GRPC_TYPE[entry.kind],
          grpc_service: entry.service,
          grpc_method: entry.method,
        },
        started: 0,
        handled: new Map(),
        buckets: new Array(BUCKETS.length + 1).fill(0),
        sum: 0,
      };
      this.#methods.set(key, s);
    }
    this.#byEntry.set(entry, s);
    return s;
  }

  /** The observer to install on the server's options. */
  readonly observe: CallObserver = (entry) => {
    const s = this.#stats(entry);
    s.started++;
    const t0 = this.#timed ? performance.now() : 0;
    return (code) => {
      const name = codeName(code);
      s.handled.set(name, (s.handled.get(name) ?? 0) + 1);
      if (!this.#timed) return;
      const secs = (performance.now() - t0) / 1000;
      s.sum += secs;
      let i = BUCKETS.findIndex((b) => secs <= b);
      if (i < 0) i = BUCKETS.length;
      s.buckets[i]++;
    };
  };

  /** The families, for a scrape. */
  families(): Family[] {
    const p = this.#prefix;
    const started: Sample[] = [];
    const handled: Sample[] = [];
    const hist: Sample[] = [];
    for (const s of this.#methods.values()) {
      started.push({ labels: s.labels, value: s.started });
      for (const [code, n] of s.handled) {
        handled.push({ labels: { ...s.labels, grpc_code: code }, value: n });
      }
      if (!this.#timed) continue;
      let cum = 0;
      BUCKETS.forEach((b, i) => {
        cum += s.buckets[i];
        hist.push({ suffix: "_bucket", labels: { ...s.labels, le: String(b) }, value: cum });
      });
      cum += s.buckets[BUCKETS.length];
      hist.push({ suffix: "_bucket", labels: { ...s.labels, le: "+Inf" }, value: cum });
      hist.push({ suffix: "_sum", labels: s.labels, value: s.sum });
      hist.push({ suffix: "_count", labels: s.labels, value: cum });
    }
    const rpc = p === "grpc" ? "RPCs" : "ttrpc calls";
    return [
      {
        name: `${p}_server_started_total`,
        help: `Total number of ${rpc} started on the server.`,
        type: "counter",
        samples: started,
      },
      {
        name: `${p}_server_handled_total`,
        help: `Total number of ${rpc} completed on the server, regardless of success or failure.`,
        type: "counter",
        samples: handled,
      },
      {
        name: `${p}_server_handling_seconds`,
        help: `Histogram of response latency (seconds) of ${rpc} handled by the server.`,
        type: "histogram",
        samples: hist,
      },
    ];
  }
}
