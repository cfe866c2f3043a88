/**
 * Task events from the shim to containerd, in order, through one queue:
 * each is forwarded over ttrpc (containerd.services.events.ttrpc.v1.Events/
 * Forward at TTRPC_ADDRESS); when that fails, the `-publish-binary`
 * (containerd itself: `containerd --address A publish --topic T --namespace N`
 * with the event Any on stdin) is tried; then the event is retried with a
 * growing pause, a few times, before it is dropped with an error in the log.
 * An event is never overtaken by a later one.
 * @module
 */

import { type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import { type Any, AnySchema, timestampFromDate } from "@bufbuild/protobuf/wkt";
import { packEvent } from "../events/mod.ts";
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
  /** Attempts per event before it is dropped (default 5). */
  attempts?: number;
  /** First pause between attempts, doubled each time (ms, default 500). */
  retryMs?: number;
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
    let pause = this.opts.retryMs ?? 500;
    for (let i = 1;; i++) {
      let why: unknown;
      try {
        await this.forward(item);
        this.delivered++;
        return;
      } catch (err) {
        why = err;
        this.dropClient();
      }
      try {
        await this.publishWithBinary(item);
        this.delivered++;
        return;
      } catch (err) {
        log.warn("publishing event failed", {
          topic: item.topic,
          attempt: i,
          ttrpc: String(why),
          binary: String(err),
        });
      }
      if (i >= attempts || (this.closing && i >= 2)) {
        this.dropped++;
        log.error("event dropped after repeated failures", { topic: item.topic });
        return;
      }
      await new Promise((r) => setTimeout(r, pause));
      pause *= 2;
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
    if (!this.opts.ttrpcAddress) throw new Error("no TTRPC_ADDRESS");
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
