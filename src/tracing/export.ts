/**
 * Getting finished spans out of a process without slowing it: a bounded
 * queue drained in batches off the request path (spans beyond the bound are
 * dropped and counted), to OTLP/HTTP JSON or to a JSON-lines file.
 * @module
 */

import { log } from "../log/mod.ts";
import { encodeSpans } from "./otlp.ts";
import type { Span, SpanSink } from "./span.ts";

/** Sends one batch of spans somewhere; may reject (logged, the batch dropped). */
export type BatchExporter = (spans: Span[]) => Promise<void>;

/** Options of {@link BatchSink}. */
export interface BatchOptions {
  /** Spans held at most; later ones are dropped until the queue drains (default 2048). */
  maxQueue?: number;
  /** Spans per export (default 512). */
  maxBatch?: number;
  /** How long a span may wait for its batch (ms, default 200). */
  delayMs?: number;
}

/** A bounded queue in front of an exporter; see the module documentation. */
export class BatchSink implements SpanSink {
  #queue: Span[] = [];
  #exporter: BatchExporter;
  #maxQueue: number;
  #maxBatch: number;
  #delayMs: number;
  #timer: ReturnType<typeof setTimeout> | undefined;
  #sending: Promise<void> = Promise.resolve();
  /** Spans dropped because the queue was full. */
  dropped = 0;

  /** A sink exporting through `exporter`. */
  constructor(exporter: BatchExporter, opts: BatchOptions = {}) {
    this.#exporter = exporter;
    this.#maxQueue = opts.maxQueue ?? 2048;
    this.#maxBatch = opts.maxBatch ?? 512;
    this.#delayMs = opts.delayMs ?? 200;
  }

  /** Spans waiting to be sent. */
  get queued(): number {
    return this.#queue.length;
  }

  add(span: Span): void {
    if (this.#queue.length >= this.#maxQueue) {
      this.dropped++;
      return;
    }
    this.#queue.push(span);
    if (this.#queue.length >= this.#maxBatch) {
      this.#drain();
      return;
    }
    if (this.#timer === undefined) {
      // Unref'd: a waiting batch never keeps a process alive; exits flush first.
      const timer = setTimeout(() => this.#drain(), this.#delayMs);
      Deno.unrefTimer(timer);
      this.#timer = timer;
    }
  }

  flush(): Promise<void> {
    return this.#drain();
  }

  // Exports run one at a time, in order; each takes what is queued when its turn comes.
  #drain(): Promise<void> {
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
    this.#sending = this.#sending.then(async () => {
      while (this.#queue.length > 0) {
        const batch = this.#queue.splice(0, this.#maxBatch);
        try {
          await this.#exporter(batch);
        } catch (err) {
          log.warn("tracing: export failed; spans dropped", {
            spans: batch.length,
            error: err instanceof Error ? err.message : String(err),
          });
        }
      }
    });
    return this.#sending;
  }
}

/** POSTs batches to an OTLP/HTTP endpoint's /v1/traces as JSON. */
export function otlpHttpExporter(url: string, service: string, version = ""): BatchExporter {
  return async (spans) => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: encodeSpans(service, spans, version),
    });
    await res.body?.cancel();
    if (!res.ok) throw new Error(`${url} answered HTTP ${res.status}`);
  };
}

/** Size at which the trace file is rotated (renamed to `<path>.1`). */
export const FILE_ROTATE_BYTES = 16 << 20;

/**
 * Appends each batch to `path` as one line of OTLP/JSON (the layout of the
 * OpenTelemetry collector's file exporter). Several processes may append
 * to the same file: each batch is one write to an O_APPEND file.
 */
export function fileExporter(path: string, service: string, version = ""): BatchExporter {
  const enc = new TextEncoder();
  return async (spans) => {
    const line = enc.encode(encodeSpans(service, spans, version) + "\n");
    try {
      if ((await Deno.stat(path)).size + line.length > FILE_ROTATE_BYTES) {
        await Deno.rename(path, `${path}.1`).catch(() => {});
      }
    } catch { /* not there yet */ }
    const f = await Deno.open(path, { append: true, create: true, mode: 0o600 });
    try {
      let off = 0;
      while (off < line.length) off += await f.write(line.subarray(off));
    } finally {
      f.close();
    }
  };
}

/** Keeps finished spans in memory (the client's own spans under `berth trace`). */
export class MemorySink implements SpanSink {
  readonly spans: Span[] = [];
  add(span: Span): void {
    this.spans.push(span);
  }
  flush(): Promise<void> {
    return Promise.resolve();
  }
}
