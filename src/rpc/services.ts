/**
 * Services: which handler answers which service/method, and the conversion
 * between wire bytes and protobuf-es messages around it. Built from the
 * service descriptors protobuf-es generates; knows nothing of sockets or
 * frames, so another transport can reuse the same registry and handlers.
 *
 * @example
 * ```ts
 * const set = new ServiceSet();
 * set.register(Task, { state: (req, ctx) => ({ id: req.id }) });
 * set.register(Task, impl, { name: "containerd.task.v3.Task" });
 * ```
 * @module
 */

import {
  create,
  type DescMessage,
  type DescMethod,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import type { GenService, GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import { BerthError, Code } from "../errdefs/mod.ts";
import type { CallContext } from "./context.ts";
import { endCallSpan } from "./tracing.ts";
import type { Span } from "../tracing/mod.ts";

/**
 * What a handler answers with: a message or an init object for one. Methods
 * returning google.protobuf.Empty may also return nothing.
 */
export type Answer<O extends DescMessage> = O["typeName"] extends "google.protobuf.Empty"
  ? MessageInitShape<O> | void
  : MessageInitShape<O>;

/** Answers one unary call. */
export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  req: MessageShape<I>,
  ctx: CallContext,
) => Promise<Answer<O>> | Answer<O>;

/** Answers one request with a stream of messages. */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  req: MessageShape<I>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

/** Reads a stream of requests and answers once. */
export type ClientStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  reqs: AsyncIterable<MessageShape<I>>,
  ctx: CallContext,
) => Promise<Answer<O>> | Answer<O>;

/** Reads a stream of requests and answers with a stream. */
export type BidiStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  reqs: AsyncIterable<MessageShape<I>>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

/** The handler type for one generated method descriptor. */
export type MethodHandler<M> = M extends {
  methodKind: infer K;
  input: infer I extends DescMessage;
  output: infer O extends DescMessage;
} ? K extends "unary" ? UnaryHandler<I, O>
  : K extends "server_streaming" ? ServerStreamingHandler<I, O>
  : K extends "client_streaming" ? ClientStreamingHandler<I, O>
  : BidiStreamingHandler<I, O>
  : never;

/**
 * An implementation of service `S`: handlers keyed by each method's
 * localName (e.g. `state` for `State`). Methods left out answer Unimplemented.
 */
export type ServiceImpl<S extends GenService<GenServiceMethods>> = {
  [K in keyof S["method"]]?: MethodHandler<S["method"][K]>;
};

/** Options of {@link ServiceSet.register}. */
export interface RegisterOptions {
  /** Registers under this full service name instead of the descriptor's. */
  name?: string;
}

/** One registered method: what a transport needs to serve it. */
export interface MethodEntry {
  /** Registered full service name. */
  readonly service: string;
  /** Method name on the wire, e.g. "State". */
  readonly method: string;
  /** unary, server_streaming, client_streaming or bidi_streaming. */
  readonly kind: DescMethod["methodKind"];
  /** Request message schema. */
  readonly input: DescMessage;
  /** Response message schema. */
  readonly output: DescMessage;
  /** The handler, or undefined when the implementation left it out. */
  readonly handler: ((arg: unknown, ctx: CallContext) => unknown) | undefined;
  /** The object the handler is called on (so class-based implementations keep `this`). */
  readonly self: unknown;
}

/**
 * Told when a call to a registered method starts; returns what the server
 * calls once, with the call's status code, when the call ends (answered,
 * failed, cancelled or cut off). Servers take one as `observe`: only the
 * daemon installs one (metrics, the debug endpoint's in-flight list), and
 * without it a call costs nothing extra (no clock read, no allocation).
 */
export type CallObserver = (entry: MethodEntry) => (code: Code) => void;

/**
 * What both servers keep of a call they serve, whatever the transport:
 * whether it is over, and the observer's end, told once.
 */
export class ServedCall {
  /** Set once the call's status went out or the call was abandoned (see {@link settle}). */
  finished = false;
  /** The {@link CallObserver}'s end of this call, when one is installed. */
  observed: ((code: Code) => void) | undefined = undefined;
  /** The call's span, when it is traced. */
  span: Span | undefined = undefined;

  /** Marks the call over with `code`, telling the observer and ending the span once. */
  settle(code: Code): void {
    this.finished = true;
    const done = this.observed;
    if (done !== undefined) {
      this.observed = undefined;
      done(code);
    }
    const span = this.span;
    if (span !== undefined) {
      this.span = undefined;
      endCallSpan(span, code);
    }
  }
}

/** Service name -> method name -> entry. */
export class ServiceSet {
  #services = new Map<string, Map<string, MethodEntry>>();

  /**
   * Registers `impl` for `service`. Throws AlreadyExists when the name is
   * taken and InvalidArgument when `impl` names a method the service lacks
   * (a typo would otherwise silently answer Unimplemented).
   */
  register<S extends GenService<GenServiceMethods>>(
    service: S,
    impl: ServiceImpl<S>,
    opts: RegisterOptions = {},
  ): void {
    const desc = service as unknown as DescService;
    const name = opts.name ?? desc.typeName;
    if (this.#services.has(name)) {
      throw new BerthError(Code.AlreadyExists, `service ${name} is already registered`);
    }
    const known = new Set(desc.methods.map((m) => m.localName));
    for (const [key, value] of Object.entries(impl)) {
      // Data fields of a class-based implementation are not handlers.
      if (typeof value === "function" && !known.has(key)) {
        throw new BerthError(
          Code.InvalidArgument,
          `${name} has no method "${key}" (methods: ${[...known].join(", ")})`,
        );
      }
    }
    const methods = new Map<string, MethodEntry>();
    for (const m of desc.methods) {
      const h = (impl as Record<string, unknown>)[m.localName];
      if (h !== undefined && typeof h !== "function") {
        throw new BerthError(
          Code.InvalidArgument,
          `handler ${name}.${m.localName} is not a function`,
        );
      }
      methods.set(m.name, {
        service: name,
        method: m.name,
        kind: m.methodKind,
        input: m.input,
        output: m.output,
        handler: h as MethodEntry["handler"],
        self: impl,
      });
    }
    this.#services.set(name, methods);
  }

  /** The entry for service/method; throws Unimplemented naming what is missing. */
  lookup(service: string, method: string): MethodEntry {
    const methods = this.#services.get(service);
    if (methods === undefined) {
      throw new BerthError(Code.Unimplemented, `unknown service ${service}`);
    }
    const entry = methods.get(method);
    if (entry === undefined) {
      throw new BerthError(
        Code.Unimplemented,
        `unknown method ${method} of service ${service}`,
      );
    }
    if (entry.handler === undefined) {
      throw new BerthError(Code.Unimplemented, `${service}/${method} is not implemented`);
    }
    return entry;
  }

  /** Registered service names. */
  names(): string[] {
    return [...this.#services.keys()];
  }
}

/** Decodes a request message; garbage becomes InvalidArgument, never a crash. */
export function decodeInput(entry: MethodEntry, bytes: Uint8Array): MessageShape<DescMessage> {
  try {
    return fromBinary(entry.input, bytes);
  } catch (err) {
    throw new BerthError(
      Code.InvalidArgument,
      `cannot decode ${entry.input.typeName} for ${entry.service}/${entry.method}: ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  }
}

/**
 * Encodes a handler's answer (a message or an init object for one;
 * undefined is the empty message, which is what Empty-returning handlers give).
 */
export function encodeOutput(entry: MethodEntry, value: unknown): Uint8Array {
  if (value === undefined) return toBinary(entry.output, create(entry.output));
  if (value === null || typeof value !== "object") {
    throw new BerthError(
      Code.Internal,
      `handler ${entry.service}/${entry.method} returned ${value === null ? "null" : typeof value}`,
    );
  }
  const out = entry.output;
  const msg = (value as { $typeName?: string }).$typeName === out.typeName
    ? value as MessageShape<DescMessage>
    : create(out, value as MessageInitShape<DescMessage>);
  return toBinary(out, msg);
}

/**
 * Runs a unary handler on encoded input, giving encoded output; synchronous
 * when the handler is, so the common case costs no extra promise.
 */
export function callUnary(
  entry: MethodEntry,
  payload: Uint8Array,
  ctx: CallContext,
): Uint8Array | Promise<Uint8Array> {
  const req = decodeInput(entry, payload);
  const res = entry.handler!.call(entry.self, req, ctx);
  if (isThenable(res)) return Promise.resolve(res).then((v) => encodeOutput(entry, v));
  return encodeOutput(entry, res);
}

/** True for promises and promise-like values. */
export function isThenable(v: unknown): v is PromiseLike<unknown> {
  return v !== null && typeof v === "object" &&
    typeof (v as { then?: unknown }).then === "function";
}
