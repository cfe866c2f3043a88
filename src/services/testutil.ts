/**
 * Helpers for the services' unit tests: a metadata store, blob store and
 * native snapshotter on a temporary root, an event exchange, and call
 * contexts as a transport would make them.
 * @module
 */

import {
  create,
  type DescMessage,
  type DescService,
  type MessageInitShape,
} from "@bufbuild/protobuf";
import { ContentStore } from "../content/mod.ts";
import { Exchange } from "../events/mod.ts";
import { type Metadata, openMetadata } from "../metadata/mod.ts";
import { NativeSnapshotter, type Snapshotter } from "../snapshots/mod.ts";
import type { CallContext } from "../rpc/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../namespaces/mod.ts";
import type { RPCService, Transport } from "./mod.ts";

/** What a service test runs against. */
export interface Fixture {
  root: string;
  md: Metadata;
  content: ContentStore;
  native: Snapshotter;
  events: Exchange;
}

/** Runs `fn` with fresh stores on a temporary root, closing and removing everything after. */
export async function withFixture(fn: (f: Fixture) => Promise<void>): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "berth-svc-" });
  const md = await openMetadata(root);
  const content = await ContentStore.open(`${root}/io.containerd.content.v1.content`);
  const native = await NativeSnapshotter.open(`${root}/io.containerd.snapshotter.v1.native`);
  const events = new Exchange();
  try {
    await fn({ root, md, content, native, events });
  } finally {
    events.close();
    native.close();
    md.close();
    await Deno.remove(root, { recursive: true });
  }
}

/** A call context in namespace `ns` (none: no namespace sent), with optional extra metadata. */
export function callIn(ns?: string, extra: Record<string, string> = {}): CallContext {
  const metadata = new Map<string, string[]>();
  if (ns !== undefined) metadata.set(TTRPC_NAMESPACE_KEY, [ns]);
  for (const [k, v] of Object.entries(extra)) metadata.set(k, [v]);
  return { service: "test", method: "test", metadata, signal: new AbortController().signal };
}

/** Everything an async iterable yields. */
export async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** An async iterable of `items`. */
export async function* from<T>(items: T[]): AsyncIterable<T> {
  for (const x of items) yield x;
}

/** A service's handlers by method localName, loosely typed for tests. */
export type Handlers = Record<string, (req: unknown, ctx: CallContext) => unknown>;

/**
 * The handlers `svc` registers for `service` (full name), captured the way
 * a server would see them; requests given as plain objects become messages
 * (defaults filled in) as a transport would decode them.
 */
export function handlersOf(
  svc: RPCService,
  service: string,
  transport: Transport = "ttrpc",
): Handlers {
  const seen = new Map<string, Handlers>();
  svc.registerOn({
    register(desc, impl, opts) {
      const d = desc as unknown as DescService;
      const out: Handlers = {};
      for (const m of d.methods) {
        const h =
          (impl as Record<string, (req: unknown, ctx: CallContext) => unknown>)[m.localName];
        if (h === undefined) continue;
        const streamIn = m.methodKind === "client_streaming" || m.methodKind === "bidi_streaming";
        out[m.localName] = (req, ctx) =>
          h.call(impl, streamIn ? req : create(m.input, req as MessageInitShape<DescMessage>), ctx);
      }
      seen.set(opts?.name ?? d.typeName, out);
    },
  }, transport);
  const h = seen.get(service);
  if (h === undefined) {
    throw new Error(`${service} not registered (got ${[...seen.keys()].join(", ")})`);
  }
  return h;
}

/** Calls a unary handler; sync throws become rejections. */
export function unary<T>(h: Handlers, method: string, req: unknown, ctx: CallContext): Promise<T> {
  return Promise.resolve().then(() => h[method](req, ctx) as T);
}

/** Calls a streaming handler and collects what it yields. */
export function streamed<T>(
  h: Handlers,
  method: string,
  req: unknown,
  ctx: CallContext,
): Promise<T[]> {
  return Promise.resolve().then(() => collect(h[method](req, ctx) as AsyncIterable<T>));
}
