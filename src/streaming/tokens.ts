/**
 * One-time tokens for streaming URLs: the CRI call stores its request under
 * a random token, the client's HTTP request consumes it. Tokens expire
 * (containerd: one minute) and at most a bounded number wait at once.
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";

/** How many tokens may wait at once (containerd's limit). */
export const MAX_IN_FLIGHT = 1000;

/** Stores values under random single-use tokens that expire. */
export class TokenCache<T> {
  #entries = new Map<string, { value: T; expires: number }>();
  #ttlMs: number;
  #now: () => number;

  /** Tokens live `ttlMs`; `now` is injectable for tests. */
  constructor(ttlMs: number, now: () => number = Date.now) {
    this.#ttlMs = ttlMs;
    this.#now = now;
  }

  /** Stores `value` and returns its new token (URL-safe). */
  insert(value: T): string {
    this.#sweep();
    if (this.#entries.size >= MAX_IN_FLIGHT) {
      throw new BerthError(
        Code.ResourceExhausted,
        `maximum number of in-flight streaming requests (${MAX_IN_FLIGHT}) exceeded`,
      );
    }
    let token: string;
    do {
      const bytes = crypto.getRandomValues(new Uint8Array(8));
      token = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
        .replace(/=+$/, "");
    } while (this.#entries.has(token));
    this.#entries.set(token, { value, expires: this.#now() + this.#ttlMs });
    return token;
  }

  /** Takes the value of `token` (once); undefined when unknown or expired. */
  consume(token: string): T | undefined {
    const e = this.#entries.get(token);
    if (!e) return undefined;
    this.#entries.delete(token);
    return e.expires > this.#now() ? e.value : undefined;
  }

  /** Tokens waiting now (expired ones not counted). */
  get size(): number {
    this.#sweep();
    return this.#entries.size;
  }

  #sweep(): void {
    const now = this.#now();
    for (const [k, e] of this.#entries) if (e.expires <= now) this.#entries.delete(k);
  }
}
