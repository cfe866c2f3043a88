// Shared by the ttrpc unit tests: an Echo service (proto/berth/testing/v1)
// with one method of each kind, and a server on a temporary socket.
import { BerthError } from "../errdefs/mod.ts";
import { Echo, type EchoRequest, type EchoResponse } from "../gen/berth/testing/v1/echo_pb.ts";
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { EchoResponseSchema } from "../gen/berth/testing/v1/echo_pb.ts";
import type { CallContext, ServiceImpl } from "../rpc/mod.ts";
import { Server, type ServerOptions } from "./server.ts";

type Out = MessageInitShape<typeof EchoResponseSchema>;

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const t = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(t);
      reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

function seen(ctx: CallContext): string[] {
  const out: string[] = [];
  for (const [k, vs] of ctx.metadata) for (const v of vs) out.push(`${k}=${v}`);
  if (ctx.deadline !== undefined) {
    out.push(`deadline-in-ms=${Math.round((ctx.deadline - Date.now()) / 100) * 100}`);
  }
  return out.sort();
}

/** What the Echo handlers observed, for assertions. */
export interface Observed {
  aborted: Array<{ text: string; reason: unknown }>;
  finished: string[];
}

/** The Echo implementation the tests talk to. */
export function echoImpl(observed: Observed): ServiceImpl<typeof Echo> {
  return {
    async say(req: EchoRequest, ctx: CallContext): Promise<Out> {
      if (req.delayMs > 0) {
        try {
          await sleep(req.delayMs, ctx.signal);
        } catch (err) {
          observed.aborted.push({ text: req.text, reason: err });
          throw err;
        }
      }
      if (req.failCode !== 0) throw new BerthError(req.failCode, req.text);
      if (req.text === "plain-error") throw new Error("something broke");
      observed.finished.push(req.text);
      return { text: req.text, metadata: seen(ctx), blob: req.blob };
    },
    async *count(req: EchoRequest, ctx: CallContext): AsyncIterable<Out> {
      for (let i = 0; i < req.count; i++) {
        if (req.delayMs > 0) await sleep(req.delayMs, ctx.signal);
        yield { text: req.text, index: i };
      }
      if (req.failCode !== 0) throw new BerthError(req.failCode, req.text);
      observed.finished.push(`count:${req.text}`);
    },
    async join(reqs: AsyncIterable<EchoRequest>, ctx: CallContext): Promise<Out> {
      const parts: string[] = [];
      for await (const r of reqs) {
        if (r.failCode !== 0) throw new BerthError(r.failCode, r.text);
        parts.push(r.text);
      }
      return { text: parts.join("+"), index: parts.length, metadata: seen(ctx) };
    },
    async *chat(reqs: AsyncIterable<EchoRequest>): AsyncIterable<Out> {
      let i = 0;
      for await (const r of reqs) {
        if (r.failCode !== 0) throw new BerthError(r.failCode, r.text);
        yield { text: r.text.toUpperCase(), index: i++ };
      }
    },
  };
}

/** A server with Echo on a fresh temporary socket; `stop()` closes it and removes the directory. */
export interface EchoServer {
  server: Server;
  path: string;
  observed: Observed;
  stop(): Promise<void>;
}

/** Starts an Echo server on a temporary socket. */
export async function startEcho(opts: ServerOptions = {}): Promise<EchoServer> {
  const dir = await Deno.makeTempDir({ prefix: "berth-ttrpc-" });
  const path = `${dir}/echo.sock`;
  const observed: Observed = { aborted: [], finished: [] };
  const server = new Server(opts);
  server.register(Echo, echoImpl(observed));
  await server.listen(path);
  return {
    server,
    path,
    observed,
    async stop() {
      await server.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
}

export type { EchoResponse };
