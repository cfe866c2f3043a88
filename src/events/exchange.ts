/**
 * The in-process event exchange: services publish to it, shims' events are
 * forwarded into it, and subscribers (the Events service's Subscribe, the
 * task manager) receive every envelope that passes their filters.
 *
 * @module
 */

import type { DescMessage, MessageInitShape } from "@bufbuild/protobuf";
import { type Any, timestampNow } from "@bufbuild/protobuf/wkt";
import { BerthError, Code, failedPrecondition, invalidArgument } from "../errdefs/mod.ts";
import { parseFilters } from "../filters/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";
import { log, logEnabled } from "../log/mod.ts";
import { adaptEnvelope } from "./adapt.ts";
import { type Envelope, packEvent } from "./types.ts";

/** Options of {@link Exchange}. */
export interface ExchangeOptions {
  /**
   * Envelopes a subscriber may have unread before it is dropped; keeps one
   * stuck subscriber from growing the daemon without bound (default 4096).
   */
  maxPending?: number;
}

/** Throws InvalidArgument unless `topic` is "/" followed by identifiers joined by "/". */
export function validateTopic(topic: string): void {
  if (topic === "") throw invalidArgument("event topic must not be empty");
  if (topic[0] !== "/") {
    throw invalidArgument(`event topic ${JSON.stringify(topic)} must start with "/"`);
  }
  if (topic.length === 1) throw invalidArgument(`event topic "/" must have at least one component`);
  for (const part of topic.slice(1).split("/")) {
    try {
      validateIdentifier(part, "topic component");
    } catch (err) {
      throw invalidArgument(`event topic ${JSON.stringify(topic)}: ${(err as Error).message}`);
    }
  }
}

/** Checks what containerd checks of a forwarded envelope: namespace, topic, timestamp. */
export function validateEnvelope(env: Envelope): void {
  if (env.namespace === "") throw invalidArgument("event envelope has no namespace");
  try {
    validateIdentifier(env.namespace, "namespace");
  } catch (err) {
    throw invalidArgument(`event envelope has an invalid namespace: ${(err as Error).message}`);
  }
  validateTopic(env.topic);
  const ts = env.timestamp;
  if (ts === undefined || (ts.seconds === 0n && ts.nanos === 0)) {
    throw invalidArgument("event envelope must carry a timestamp when forwarded");
  }
  if (env.event === undefined) throw invalidArgument("event envelope has no event");
}

interface Subscriber {
  match(env: Envelope): boolean;
  push(env: Envelope): void;
  end(err?: BerthError): void;
}

/** The exchange; see the module documentation. */
export class Exchange {
  #subs = new Set<Subscriber>();
  #maxPending: number;
  #closed = false;

  /** Makes an exchange with no subscribers. */
  constructor(opts: ExchangeOptions = {}) {
    this.#maxPending = opts.maxPending ?? 4096;
  }

  /** Number of live subscriptions. */
  get subscribers(): number {
    return this.#subs.size;
  }

  /**
   * Publishes `message` (a message of `schema`, or the fields of one) on
   * `topic` in `namespace`, stamped now. A missing
   * namespace is FailedPrecondition, a bad one or a bad topic InvalidArgument.
   */
  publish<D extends DescMessage>(
    namespace: string,
    topic: string,
    schema: D,
    message: MessageInitShape<D>,
  ): void {
    this.publishAny(namespace, topic, packEvent(schema, message));
  }

  /** {@link publish} for an event that is already packed (the Events service's Publish). */
  publishAny(namespace: string, topic: string, event: Any): void {
    if (namespace === "") throw failedPrecondition("namespace is required to publish an event");
    validateIdentifier(namespace, "namespace");
    validateTopic(topic);
    this.#broadcast({ timestamp: timestampNow(), namespace, topic, event });
  }

  /** Passes on an envelope stamped elsewhere (a shim's event); see {@link validateEnvelope}. */
  forward(env: Envelope): void {
    validateEnvelope(env);
    this.#broadcast(env);
  }

  #broadcast(env: Envelope): void {
    if (logEnabled("debug")) {
      log.debug("event published", {
        topic: env.topic,
        ns: env.namespace,
        type: env.event.typeUrl,
      });
    }
    for (const s of this.#subs) {
      let pass: boolean;
      try {
        pass = s.match(env);
      } catch {
        pass = false;
      }
      if (pass) s.push(env);
    }
  }

  /**
   * Envelopes published from now on that pass any of `filters` (none: all),
   * until `signal` aborts, the consumer stops iterating or the exchange
   * closes. A bad filter is InvalidArgument, thrown here rather than on the
   * first read. A consumer that falls `maxPending` envelopes behind is
   * dropped with ResourceExhausted.
   */
  subscribe(
    filters: readonly string[] = [],
    signal?: AbortSignal,
  ): AsyncIterableIterator<Envelope> {
    const filter = parseFilters(filters);
    const queue: Envelope[] = [];
    let waiting: ((r: IteratorResult<Envelope>) => void) | undefined;
    let failWaiting: ((e: unknown) => void) | undefined;
    let done = false;
    let failure: BerthError | undefined;
    const onAbort = () => sub.end();
    const sub: Subscriber = {
      match: (env) => filter.match(adaptEnvelope(env)),
      push: (env) => {
        if (done) return;
        if (waiting !== undefined) {
          const w = waiting;
          waiting = failWaiting = undefined;
          w({ value: env, done: false });
          return;
        }
        if (queue.length >= this.#maxPending) {
          sub.end(
            new BerthError(
              Code.ResourceExhausted,
              `event subscriber fell ${queue.length} events behind; dropped`,
            ),
          );
          return;
        }
        queue.push(env);
      },
      end: (err) => {
        if (done) return;
        done = true;
        failure = err;
        this.#subs.delete(sub);
        signal?.removeEventListener("abort", onAbort);
        if (waiting !== undefined) {
          const w = waiting;
          const f = failWaiting!;
          waiting = failWaiting = undefined;
          if (err !== undefined) f(err);
          else w({ value: undefined, done: true });
        }
      },
    };
    if (this.#closed || signal?.aborted) done = true;
    else {
      this.#subs.add(sub);
      signal?.addEventListener("abort", onAbort, { once: true });
    }
    const iterator: AsyncIterableIterator<Envelope> = {
      next: () => {
        if (queue.length > 0) return Promise.resolve({ value: queue.shift()!, done: false });
        if (done) {
          if (failure !== undefined) {
            const f = failure;
            failure = undefined;
            return Promise.reject(f);
          }
          return Promise.resolve({ value: undefined, done: true });
        }
        return new Promise((resolve, reject) => {
          waiting = resolve;
          failWaiting = reject;
        });
      },
      return: () => {
        queue.length = 0;
        failure = undefined;
        sub.end();
        return Promise.resolve({ value: undefined, done: true });
      },
      [Symbol.asyncIterator]() {
        return iterator;
      },
    };
    return iterator;
  }

  /** Ends every subscription (their iterators finish) and refuses new ones. */
  close(): void {
    this.#closed = true;
    for (const s of [...this.#subs]) s.end();
  }
}
