/**
 * The inbound side of a stream: messages pushed by the connection's reader,
 * pulled by one consumer with `for await`. ttrpc has no flow control, so a
 * bounded queue plus "stop reading the socket while it is full" is the only
 * back-pressure there is.
 *
 * @module
 */

/** A single-consumer async queue with an end, an error, and a soft capacity. */
export class MessageQueue<T> implements AsyncIterableIterator<T> {
  #items: T[] = [];
  #head = 0;
  #ended = false;
  #error: unknown = undefined;
  #failed = false;
  #abandoned = false;
  #pull: { resolve: (r: IteratorResult<T>) => void; reject: (e: unknown) => void } | undefined;
  #space: Array<() => void> = [];
  #onAbandon: (() => void) | undefined;

  /**
   * `capacity` is how many unread messages count as full (see
   * {@link whenSpace}); `onAbandon` runs when the consumer stops early.
   */
  constructor(readonly capacity = 64, onAbandon?: () => void) {
    this.#onAbandon = onAbandon;
  }

  /** Unread messages. */
  get size(): number {
    return this.#items.length - this.#head;
  }

  /** True once {@link end} or {@link fail} was called or the consumer left. */
  get closed(): boolean {
    return this.#ended || this.#failed || this.#abandoned;
  }

  /** True when the consumer should catch up before more is pushed. */
  get full(): boolean {
    return this.size >= this.capacity;
  }

  /** Adds a message; ignored once the queue is closed. */
  push(item: T): void {
    if (this.closed) return;
    const pull = this.#pull;
    if (pull !== undefined) {
      this.#pull = undefined;
      pull.resolve({ value: item, done: false });
      return;
    }
    this.#items.push(item);
  }

  /** No more messages: the consumer finishes after the buffered ones. */
  end(): void {
    if (this.closed) return;
    this.#ended = true;
    this.#settle();
  }

  /** The stream broke: the consumer gets `err` after the buffered messages. */
  fail(err: unknown): void {
    if (this.closed) return;
    this.#failed = true;
    this.#error = err;
    this.#settle();
  }

  /** Resolves when the queue has room again, or is closed. */
  whenSpace(): Promise<void> {
    if (!this.full || this.closed) return Promise.resolve();
    return new Promise((resolve) => this.#space.push(resolve));
  }

  /** Takes the next message, waiting for one if needed. */
  next(): Promise<IteratorResult<T>> {
    if (this.#head < this.#items.length) {
      const value = this.#items[this.#head];
      this.#items[this.#head++] = undefined as T;
      if (this.#head === this.#items.length) {
        this.#items = [];
        this.#head = 0;
      }
      if (this.#space.length > 0 && !this.full) this.#wakeSpace();
      return Promise.resolve({ value, done: false });
    }
    if (this.#failed) return Promise.reject(this.#error);
    if (this.#ended || this.#abandoned) return Promise.resolve({ value: undefined, done: true });
    if (this.#pull !== undefined) {
      return Promise.reject(new Error("ttrpc: stream read concurrently"));
    }
    return new Promise((resolve, reject) => {
      this.#pull = { resolve, reject };
    });
  }

  /** The consumer stops early (`break` in `for await`): drops what is left. */
  return(): Promise<IteratorResult<T>> {
    if (!this.closed) {
      this.#abandoned = true;
      this.#items = [];
      this.#head = 0;
      this.#settle();
      this.#onAbandon?.();
    }
    return Promise.resolve({ value: undefined, done: true });
  }

  /** This queue is its own iterator (one consumer). */
  [Symbol.asyncIterator](): this {
    return this;
  }

  #settle(): void {
    const pull = this.#pull;
    if (pull !== undefined && this.#head >= this.#items.length) {
      this.#pull = undefined;
      if (this.#failed) pull.reject(this.#error);
      else pull.resolve({ value: undefined, done: true });
    }
    this.#wakeSpace();
  }

  #wakeSpace(): void {
    const waiters = this.#space;
    this.#space = [];
    for (const w of waiters) w();
  }
}
