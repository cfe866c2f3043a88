/**
 * The write side both transports share: bytes a frame writer queues go out
 * together, one system call per tick however many frames were queued. ttrpc's
 * frame writer and gRPC's HTTP/2 writer are built on it.
 *
 * @module
 */

/** Something bytes can be written to; a Deno.Conn fits. */
export interface ByteSink {
  /** Writes some prefix of `p`; resolves with how many bytes were taken. */
  write(p: Uint8Array): Promise<number>;
}

const WRITE_BUFFER = 64 << 10;

/**
 * Bytes that a protocol's frame writer queues, written together: everything
 * queued in the same tick goes out with one write, so 32 answers given
 * together cost one system call, not 32. While a write is in progress new
 * bytes gather in a second buffer for the next one. Callers reserve room
 * and fill {@link BatchWriter.buffer} themselves (no copy on the hot path).
 * ttrpc's FrameWriter and gRPC's H2Writer are built on it.
 */
export class BatchWriter {
  #sink: ByteSink;
  #buf = new Uint8Array(WRITE_BUFFER);
  #spare = new Uint8Array(WRITE_BUFFER);
  #len = 0;
  #scheduled = false;
  #writing = false;
  #error: unknown = undefined;
  #drainWaiters: Array<() => void> = [];
  #onError: (err: unknown) => void;
  #flushFn = () => this.#flush();

  /**
   * Writes to `sink`. `onError` is called once, with the first write error;
   * after it (or after {@link close}) everything is dropped.
   */
  constructor(sink: ByteSink, onError: (err: unknown) => void = () => {}) {
    this.#sink = sink;
    this.#onError = onError;
  }

  /** The buffer that {@link reserve} offsets point into (valid until the next reserve). */
  get buffer(): Uint8Array {
    return this.#buf;
  }

  /** Bytes queued and not yet handed to the sink. */
  get pendingBytes(): number {
    return this.#len;
  }

  /** Why writing stopped (the first write error, or {@link close}), if it did. */
  get error(): unknown {
    return this.#error;
  }

  /**
   * Appends room for `length` bytes and returns their offset in
   * {@link buffer}; the caller fills exactly those bytes, synchronously,
   * before anything else touches the writer.
   */
  reserve(length: number): number {
    // Once writing stopped bytes are dropped: keep only what is being built.
    if (this.#error !== undefined) this.#len = 0;
    const need = this.#len + length;
    if (need > this.#buf.length) this.#grow(need);
    const at = this.#len;
    this.#len = need;
    if (!this.#scheduled && !this.#writing && this.#error === undefined) {
      this.#scheduled = true;
      queueMicrotask(this.#flushFn);
    }
    return at;
  }

  /** Stops writing: what is queued or added later is dropped (the connection is gone). */
  close(): void {
    if (this.#error === undefined) this.#error = new Error("writer closed");
    this.#len = 0;
    this.#wake();
  }

  /** Resolves once everything queued so far has been written (or writing stopped). */
  drained(): Promise<void> {
    if ((this.#len === 0 && !this.#writing) || this.#error !== undefined) return Promise.resolve();
    return new Promise((resolve) => this.#drainWaiters.push(resolve));
  }

  #grow(need: number): void {
    let size = this.#buf.length * 2;
    while (size < need) size *= 2;
    const bigger = new Uint8Array(size);
    bigger.set(this.#buf.subarray(0, this.#len));
    this.#buf = bigger;
  }

  async #flush(): Promise<void> {
    this.#scheduled = false;
    if (this.#writing) return;
    this.#writing = true;
    try {
      while (this.#len > 0 && this.#error === undefined) {
        const out = this.#buf;
        const len = this.#len;
        // New bytes go into the spare buffer while this one is written.
        this.#buf = this.#spare.length >= WRITE_BUFFER ? this.#spare : new Uint8Array(WRITE_BUFFER);
        this.#len = 0;
        let off = 0;
        while (off < len) off += await this.#sink.write(out.subarray(off, len));
        // Keep a grown buffer only while traffic needs it.
        this.#spare = out.length > 4 * WRITE_BUFFER ? new Uint8Array(WRITE_BUFFER) : out;
      }
    } catch (err) {
      if (this.#error === undefined) {
        this.#error = err;
        this.#len = 0;
        this.#onError(err);
      }
    } finally {
      this.#writing = false;
      this.#wake();
    }
  }

  #wake(): void {
    const waiters = this.#drainWaiters;
    if (waiters.length === 0) return;
    this.#drainWaiters = [];
    for (const w of waiters) w();
  }
}
