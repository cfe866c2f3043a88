/**
 * A minimal OTLP/HTTP JSON receiver on a loopback port: what `berth trace`
 * listens with, and what tests and the breakdown bench check spans with
 * (no OpenTelemetry collector is packaged for Debian 12).
 * @module
 */

import { decodeRequest, type ReceivedSpan } from "./otlp.ts";

/** A running receiver. */
export interface Receiver {
  /** The port it listens on (127.0.0.1). */
  readonly port: number;
  /** Its traces URL. */
  readonly url: string;
  /** Every span received so far, in arrival order. */
  readonly spans: ReceivedSpan[];
  /** Every request body received, parsed (for encoding checks). */
  readonly bodies: unknown[];
  /**
   * Resolves once no span arrived for `quietMs`, or `maxMs` passed, or
   * `until(spans)` is true (checked as spans arrive).
   */
  settle(quietMs: number, maxMs: number, until?: (spans: ReceivedSpan[]) => boolean): Promise<void>;
  /** Stops listening. */
  close(): Promise<void>;
}

/** Starts a receiver on 127.0.0.1 (`port` 0: any free one). */
export function startReceiver(port = 0): Promise<Receiver> {
  const spans: ReceivedSpan[] = [];
  const bodies: unknown[] = [];
  let last = performance.now();
  let wake: (() => void) | undefined;
  return new Promise((resolve) => {
    const server = Deno.serve({
      hostname: "127.0.0.1",
      port,
      onListen: () => {},
    }, async (req) => {
      const path = new URL(req.url).pathname;
      if (path !== "/v1/traces") return new Response("not found\n", { status: 404 });
      if (req.method !== "POST") return new Response("POST only\n", { status: 405 });
      if (!(req.headers.get("content-type") ?? "").startsWith("application/json")) {
        return new Response("only OTLP/HTTP JSON is accepted here\n", { status: 415 });
      }
      let got: ReceivedSpan[];
      try {
        const body = await req.json();
        got = decodeRequest(body);
        bodies.push(body);
      } catch (err) {
        return new Response(`bad request: ${(err as Error).message}\n`, { status: 400 });
      }
      spans.push(...got);
      last = performance.now();
      wake?.();
      return Response.json({});
    });
    const addr = server.addr as Deno.NetAddr;
    resolve({
      port: addr.port,
      url: `http://127.0.0.1:${addr.port}/v1/traces`,
      spans,
      bodies,
      async settle(quietMs, maxMs, until) {
        const deadline = performance.now() + maxMs;
        last = performance.now();
        while (performance.now() < deadline) {
          if (until?.(spans)) return;
          const left = Math.min(quietMs - (performance.now() - last), deadline - performance.now());
          if (left <= 0) return;
          await new Promise<void>((r) => {
            const t = setTimeout(r, left);
            wake = () => {
              clearTimeout(t);
              r();
            };
          });
          wake = undefined;
        }
      },
      async close() {
        await server.shutdown();
      },
    });
  });
}
