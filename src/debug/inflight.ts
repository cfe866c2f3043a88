/**
 * The daemon's goroutine dump, in berth's terms: the RPC calls in flight on
 * its servers, each with its method and age. An observer on each server
 * adds a call when it starts and drops it when it ends.
 * @module
 */

import type { CallObserver } from "../rpc/mod.ts";

/** One call in flight, as listed. */
export interface InFlightCall {
  transport: string;
  service: string;
  method: string;
  /** When it started (ISO 8601). */
  started: string;
  /** Seconds since it started. */
  ageSeconds: number;
}

interface Entry {
  transport: string;
  service: string;
  method: string;
  startedAt: number;
}

/** The calls in flight on every server given an observer from {@link observer}. */
export class InFlight {
  #calls = new Set<Entry>();

  /** An observer for the server named `transport` ("grpc", "ttrpc"). */
  observer(transport: string): CallObserver {
    return (entry) => {
      const e: Entry = {
        transport,
        service: entry.service,
        method: entry.method,
        startedAt: Date.now(),
      };
      this.#calls.add(e);
      return () => this.#calls.delete(e);
    };
  }

  /** The calls in flight now, oldest first. */
  list(now = Date.now()): InFlightCall[] {
    return [...this.#calls]
      .sort((a, b) => a.startedAt - b.startedAt)
      .map((e) => ({
        transport: e.transport,
        service: e.service,
        method: e.method,
        started: new Date(e.startedAt).toISOString(),
        ageSeconds: (now - e.startedAt) / 1000,
      }));
  }
}
