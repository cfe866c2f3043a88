/**
 * Task events from the shim to containerd, in order, through one queue:
 * each is forwarded over ttrpc (containerd.services.events.ttrpc.v1.Events/
 * Forward at TTRPC_ADDRESS); with no TTRPC_ADDRESS (containerd before 1.3),
 * the `-publish-binary` is run instead (`containerd --address A publish
 * --topic T --namespace N` with the event Any on stdin). While no daemon
 * is there to take it (nothing listens, or it died mid-call) an event is
 * kept and retried with a growing pause, so that an exit while the daemon
 * is down is reported once it is back, however long that takes; an event
 * a daemon refuses, or a binary fails to publish, is dropped after a few
 * attempts with an error in the log. An event is never overtaken by a
 * later one.
 * @module
 */

import { type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { packEvent } from "../events/mod.ts";
import { Code, isCode } from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import { run } from "../spawn/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../namespaces/mod.ts";
import { type Client, connect, serviceClient } from "../ttrpc/mod.ts";
import { Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.ts";

/** One queued event. */
interface Item {
  topic: string;
  event: Any;
  at: Date;
}

/** Where and how events go. */
export interface PublisherOptions {
  /** containerd's ttrpc socket (TTRPC_ADDRESS), "" for none. */
  ttrpcAddress: string;
  /** containerd's gRPC address, for the publish binary. */
  address: string;
  /** The binary that can publish (`-publish-binary`), "" for none. */
  publishBinary: string;
  namespace: string;
  /** Attempts per event failing otherwise than Unavailable, before it is dropped (default 5). */
  attempts?: number;
  /** First pause between attempts, doubled each time up to `maxRetryMs` (ms, default 500). */
  retryMs?: number;
  /** Longest pause between attempts (ms, default 4000). */
  maxRetryMs?: number;
}

const FORWARD_TIMEOUT_MS = 5_000;

/** The shim's event queue. */
export class Publisher {
  private queue: Item[] = [];
  private wake: (() => void) | null = null;
  private client: Client | null = null;
  private closing = false;
  private readonly worker: Promise<void>;
  /** Events delivered so far, and dropped after every attempt failed (for tests and the state dump). */
  delivered = 0;
  dropped = 0;

  constructor(private readonly opts: PublisherOptions) {
    this.worker = this.loop();
  }

  /** Queues an event; returns at once. */
  publish<D extends DescMessage>(topic: string, schema: D, init: MessageInitShape<D>): void {
    if (this.closing) {
      log.warn("event after publisher closed; dropped", { topic });
      return;
    }
    this.queue.push({ topic, event: packEvent(schema, init), at: new Date() });
    this.wake?.();
  }

  /** Events waiting to go out. */
  get pending(): number {
    return this.queue.length;
  }

  private async loop(): Promise<void> {
    for (;;) {
      const item = this.queue[0];
      if (!item) {
        if (this.closing) return;
        await new Promise<void>((r) => (this.wake = r));
        this.wake = null;
        continue;
      }
      await this.deliver(item);
      this.queue.shift();
    }
  }

  private async deliver(item: Item): Promise<void> {
    const attempts = this.opts.attempts ?? 5;
    const maxPause = this.opts.maxRetryMs ?? 4_000;
    let pause = this.opts.retryMs ?? 500;
    for (let failed = 0, tries = 1;; tries++) {
      try {
        await (this.opts.ttrpcAddress ? this.forward(item) : this.publishWithBinary(item));
        this.delivered++;
        return;
      } catch (err) {
        this.dropClient();
        // Unavailable: nothing listens, or the daemon went away mid-call (it
        // never took the event), or it asks to be tried later. Kept.
        const absent = this.opts.ttrpcAddress !== "" && isCode(err, Code.Unavailable);
        if (!absent) failed++;
        log.warn("publishing event failed", {
          topic: item.topic,
          attempt: tries,
          kept: absent,
          error: String(err),
        });
      }
      // A closing shim gives an event one more try, not the daemon's whole absence.
      if (failed >= attempts || (this.closing && tries >= 2)) {
        this.dropped++;
        log.error("event dropped after repeated failures", { topic: item.topic });
        return;
      }
      await new Promise((r) => setTimeout(r, pause));
      pause = Math.min(pause * 2, maxPause);
    }
  }

  private dropClient(): void {
    try {
      this.client?.close();
    } catch {
      // already closed
    }
    this.client = null;
  }

  private async forward(item: Item): Promise<void> {
    if (!this.client || this.client.closed) {
      this.client = await connect(this.opts.ttrpcAddress.replace(/^unix:\/\//, ""));
    }
    const events = serviceClient(this.client, Events);
    await events.forward({
      envelope: {
        timestamp: timestampFromDate(item.at),
        namespace: this.opts.namespace,
        topic: item.topic,
        event: item.event,
      },
    }, {
      timeoutMs: FORWARD_TIMEOUT_MS,
      metadata: { [TTRPC_NAMESPACE_KEY]: this.opts.namespace },
    });
  }

  private async publishWithBinary(item: Item): Promise<void> {
    if (!this.opts.publishBinary) throw new Error("no publish binary");
    const r = await run(this.opts.publishBinary, [
      "--address",
      this.opts.address,
      "publish",
      "--topic",
      item.topic,
      "--namespace",
      this.opts.namespace,
    ], { input: toBinary(AnySchema, item.event) });
    if (!r.success) {
      throw new Error(new TextDecoder().decode(r.stderr).trim() || `exit status ${r.code}`);
    }
  }

  /** Delivers what is queued (each event still gets its retries, bounded by `timeoutMs`), then closes. */
  async close(timeoutMs = 5_000): Promise<void> {
    this.closing = true;
    this.wake?.();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.worker, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
    this.dropClient();
  }
}
