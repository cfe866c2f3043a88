/**
 * Typed stubs over a ttrpc {@link Client}: `serviceClient(client, Task)`
 * gives one method per RPC of a protobuf-es service descriptor, encoding
 * requests and decoding answers, with per-client default call options.
 *
 * @module
 */

import {
  create,
  type DescMessage,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { BerthError, Code } from "../errdefs/mod.ts";
import { metadataPairs } from "../rpc/mod.ts";
import {
  type CallOptions,
  type Client,
  type ClientStream,
  INVOKE,
  NO_OPTIONS,
  OPEN,
  type StreamCall,
  type StreamKind,
  tracedUnary,
  withTraceMetadata,
} from "./client.ts";
import { encodeMetadata, requestPrefix } from "./envelope.ts";

/** A typed method on a {@link serviceClient}, by method kind. */
export type ClientMethod<M> = M extends {
  methodKind: infer K;
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
} ? K extends "unary" ? (req: MessageInitShape<I>, opts?: CallOptions) => Promise<MessageShape<O>>
  : K extends "server_streaming"
    ? (req: MessageInitShape<I>, opts?: CallOptions) => AsyncIterable<MessageShape<O>>
  : K extends "client_streaming"
    ? (reqs: AsyncIterable<MessageInitShape<I>>, opts?: CallOptions) => Promise<MessageShape<O>>
  : (reqs: AsyncIterable<MessageInitShape<I>>, opts?: CallOptions) => AsyncIterable<MessageShape<O>>
  : never;

/** A typed client for service `S`: one method per RPC, by localName. */
export type ServiceClient<S extends GenService<GenServiceMethods>> = {
  [K in keyof S["method"]]: ClientMethod<S["method"][K]>;
};

/** Options of {@link serviceClient}. */
export interface ServiceClientOptions {
  /** Calls this full service name instead of the descriptor's (e.g. "containerd.task.v3.Task"). */
  name?: string;
  /** Options applied to every call; per-call metadata is added to these defaults' metadata. */
  defaults?: CallOptions;
}

function encodeMessage(schema: DescMessage, value: unknown): Uint8Array {
  const msg = (value as { $typeName?: string }).$typeName === schema.typeName
    ? value as MessageShape<DescMessage>
    : create(schema, value as MessageInitShape<DescMessage>);
  return toBinary(schema, msg);
}

async function* decodeEach(stream: ClientStream, schema: DescMessage): AsyncGenerator<unknown> {
  for await (const bytes of stream) {
    try {
      yield fromBinary(schema, bytes);
    } catch (err) {
      throw new BerthError(
        Code.Internal,
        `ttrpc: cannot decode ${schema.typeName}: ${String(err)}`,
      );
    }
  }
}

/** Sends every message of `reqs`, then closes the sending side; failures end the stream. */
async function pump(
  s: StreamCall,
  reqs: AsyncIterable<unknown>,
  schema: DescMessage,
): Promise<void> {
  try {
    for await (const r of reqs) {
      if (s.finished) return;
      await s.send(encodeMessage(schema, r));
    }
    s.closeSend();
  } catch (err) {
    s.fail(
      err instanceof BerthError ? err : new BerthError(
        Code.Canceled,
        `ttrpc: ${s.method}: request stream failed: ${String(err)}`,
        { cause: err },
      ),
    );
  }
}

/**
 * A typed client for `service` on `client`, e.g.
 * `await serviceClient(client, Task).state({ id: "x" }, { timeoutMs: 1000 })`.
 */
export function serviceClient<S extends GenService<GenServiceMethods>>(
  client: Client,
  service: S,
  opts: ServiceClientOptions = {},
): ServiceClient<S> {
  const desc = service as unknown as DescService;
  const name = opts.name ?? desc.typeName;
  const defaults = opts.defaults ?? NO_OPTIONS;
  const defaultPairs = defaults.metadata === undefined ? [] : metadataPairs(defaults.metadata);
  const defaultMd = defaultPairs.length > 0 ? encodeMetadata(defaultPairs) : undefined;
  const merge = (o: CallOptions | undefined): [CallOptions, Uint8Array | undefined] => {
    if (o === undefined) return [defaults, defaultMd];
    const md = o.metadata === undefined
      ? defaultMd
      : encodeMetadata(mergePairs(defaultPairs, metadataPairs(o.metadata)));
    return [
      {
        timeoutMs: o.timeoutMs ?? defaults.timeoutMs,
        signal: o.signal ?? defaults.signal,
        trace: o.trace ?? defaults.trace,
      },
      md,
    ];
  };
  // Streams pass the caller's span on as the callee's parent.
  const streamMd = (co: CallOptions, md: Uint8Array | undefined) =>
    co.trace === undefined ? md : withTraceMetadata(co.trace, md);
  const out: Record<string, unknown> = {};
  for (const m of desc.methods) {
    const prefix = requestPrefix(name, m.name);
    const { input, output } = m;
    // Client and bidi streams: open the stream, send `reqs` on it, read the answers.
    const sending = (reqs: AsyncIterable<unknown>, o?: CallOptions) => {
      const [co, md] = merge(o);
      const kind = m.methodKind as StreamKind;
      const s = client[OPEN](prefix, m.name, kind, undefined, co, streamMd(co, md)) as StreamCall;
      pump(s, reqs, input);
      return decodeEach(s, output);
    };
    switch (m.methodKind) {
      case "unary":
        out[m.localName] = (req: unknown, o?: CallOptions) => {
          const [co, md] = merge(o);
          let payload: Uint8Array;
          try {
            payload = encodeMessage(input, req);
          } catch (err) {
            return Promise.reject(
              new BerthError(Code.InvalidArgument, `ttrpc: ${m.name}: ${String(err)}`),
            );
          }
          if (co.trace !== undefined) {
            return tracedUnary(
              co.trace,
              `${name}/${m.name}`,
              md,
              (traced) => client[INVOKE](prefix, m.name, payload, co, traced, output),
            );
          }
          return client[INVOKE](prefix, m.name, payload, co, md, output);
        };
        break;
      case "server_streaming":
        out[m.localName] = (req: unknown, o?: CallOptions) => {
          const [co, md] = merge(o);
          const s = client[OPEN](
            prefix,
            m.name,
            m.methodKind as StreamKind,
            encodeMessage(input, req),
            co,
            streamMd(co, md),
          );
          return decodeEach(s, output);
        };
        break;
      case "client_streaming":
        out[m.localName] = async (reqs: AsyncIterable<unknown>, o?: CallOptions) => {
          for await (const msg of sending(reqs, o)) return msg;
          throw new BerthError(Code.Internal, `ttrpc: ${m.name}: stream ended without a response`);
        };
        break;
      case "bidi_streaming":
        out[m.localName] = (reqs: AsyncIterable<unknown>, o?: CallOptions) => sending(reqs, o);
        break;
    }
  }
  return out as ServiceClient<S>;
}

function mergePairs(
  base: Array<[string, string]>,
  extra: Array<[string, string]>,
): Array<[string, string]> {
  if (base.length === 0) return extra;
  const override = new Set(extra.map(([k]) => k));
  return [...base.filter(([k]) => !override.has(k)), ...extra];
}
