/**
 * The remotecommand protocol (exec and attach) over SPDY: the client opens
 * one stream per channel, named by its `streamType` header (error, stdin,
 * stdout, stderr, resize); once all the expected streams exist the command
 * runs, and its outcome goes to the error stream: from v4 on as a
 * metav1.Status JSON, before v4 as the failure's text only. Transport-neutral
 * parts (channels, status, resize decoding) are shared with the websocket
 * variant in {@link ./websocket.ts}.
 * @module
 */

import { log } from "../log/mod.ts";
import { type SpdyConnection, type SpdyStream } from "./spdy_conn.ts";
import type { StreamIO, StreamOptions, TerminalSize } from "./types.ts";

/** remotecommand's SPDY subprotocols, most preferred first. */
export const REMOTECOMMAND_PROTOCOLS = [
  "v4.channel.k8s.io",
  "v3.channel.k8s.io",
  "v2.channel.k8s.io",
  "channel.k8s.io",
];

/** metav1.Status as the error stream carries it (the fields the kubelet sets). */
export interface Status {
  metadata: Record<string, never>;
  status: "Success" | "Failure";
  message?: string;
  reason?: string;
  details?: { causes: { reason?: string; message: string }[] };
  code?: number;
}

/** The outcome of an exec or attach, before it is encoded for a protocol. */
export type Outcome =
  | { kind: "success" }
  | { kind: "exit"; exitCode: number }
  | { kind: "error"; message: string };

/** The Status the kubelet writes for `outcome`. */
export function statusOf(outcome: Outcome): Status {
  switch (outcome.kind) {
    case "success":
      return { metadata: {}, status: "Success" };
    case "exit":
      return {
        metadata: {},
        status: "Failure",
        message: `command terminated with non-zero exit code: exit status ${outcome.exitCode}`,
        reason: "NonZeroExitCode",
        details: { causes: [{ reason: "ExitCode", message: String(outcome.exitCode) }] },
      };
    case "error":
      return {
        metadata: {},
        status: "Failure",
        message: `Internal error occurred: ${outcome.message}`,
        reason: "InternalError",
        details: { causes: [{ message: outcome.message }] },
        code: 500,
      };
  }
}

/**
 * The error-stream bytes for `outcome` under `protocol`: v4 and later send
 * the Status JSON, even for success; older protocols send only a failure's
 * message, and nothing for success.
 */
export function encodeOutcome(protocol: string, outcome: Outcome): Uint8Array | undefined {
  const status = statusOf(outcome);
  if (protocol.startsWith("v4.") || protocol.startsWith("v5.")) {
    return new TextEncoder().encode(JSON.stringify(status));
  }
  if (status.status === "Success") return undefined;
  return new TextEncoder().encode(status.message ?? "unknown error");
}

/** True when `protocol` carries a resize channel. */
export function supportsResize(protocol: string): boolean {
  return /^v[3-9]\./.test(protocol);
}

/**
 * Decodes a stream of concatenated JSON objects `{"Width":..,"Height":..}`
 * (what the client's JSON encoder writes) into sizes. A malformed object
 * ends the iteration, as the kubelet stops reading resizes then.
 */
export async function* decodeResizes(
  readable: ReadableStream<Uint8Array>,
): AsyncGenerator<TerminalSize> {
  const dec = new TextDecoder();
  let text = "";
  let depth = 0;
  let inString = false;
  let escaped = false;
  let start = -1;
  for await (const chunk of readable) {
    const from = text.length;
    text += dec.decode(chunk, { stream: true });
    for (let i = from; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (escaped) escaped = false;
        else if (c === "\\") escaped = true;
        else if (c === '"') inString = false;
        continue;
      }
      if (c === '"') inString = true;
      else if (c === "{") {
        if (depth++ === 0) start = i;
      } else if (c === "}") {
        if (--depth === 0) {
          let v: { Width?: unknown; Height?: unknown };
          try {
            v = JSON.parse(text.slice(start, i + 1));
          } catch {
            return;
          }
          yield { width: Number(v.Width ?? 0) || 0, height: Number(v.Height ?? 0) || 0 };
        } else if (depth < 0) return;
      } else if (depth === 0 && !/\s/.test(c)) return;
    }
    if (depth === 0) {
      text = "";
    } else if (start > 0) {
      text = text.slice(start);
      start = 0;
    }
    if (text.length > 64 * 1024) return;
  }
}

/** The channels of one remotecommand session, whatever the transport. */
export interface Channels {
  io: StreamIO;
  /** Sends the outcome (if the protocol has a way to) and ends the session. */
  finish(outcome: Outcome): Promise<void>;
}

/** Runs `fn` with `channels` and reports its outcome: exec and attach share this. */
export async function runSession(
  channels: Channels,
  fn: (io: StreamIO) => Promise<Outcome>,
): Promise<void> {
  let outcome: Outcome;
  try {
    outcome = await fn(channels.io);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    log.warn("streaming session failed", { error: message });
    outcome = { kind: "error", message };
  }
  await channels.finish(outcome);
}

/**
 * Collects the client's SPDY streams for one session on `conn`: call
 * {@link accept} from the connection's stream handler, then await
 * {@link ready}. Resolves to undefined (after closing the connection) when
 * the streams do not all arrive within `creationTimeoutMs`.
 */
export class SpdySessionStreams {
  #protocol: string;
  #opts: StreamOptions;
  #expected: number;
  #streams = new Map<string, SpdyStream>();
  #received = 0;
  #resolve!: () => void;
  #ready: Promise<void>;

  /** Expects the streams `opts` asks for under `protocol`. */
  constructor(protocol: string, opts: StreamOptions) {
    this.#protocol = protocol;
    this.#opts = opts;
    this.#expected = 1 + Number(opts.stdin) + Number(opts.stdout) + Number(opts.stderr) +
      Number(opts.tty && supportsResize(protocol));
    this.#ready = new Promise((r) => this.#resolve = r);
  }

  /** The connection's stream handler: keeps the stream by its type. */
  accept = (stream: SpdyStream): string | undefined => {
    const type = stream.header("streamType");
    if (!["error", "stdin", "stdout", "stderr", "resize"].includes(type)) {
      // The kubelet accepts such a stream and ignores it; so do we.
      log.warn("unexpected remotecommand stream type", { streamType: type });
      return undefined;
    }
    if (type === "resize" && !supportsResize(this.#protocol)) return undefined;
    this.#streams.set(type, stream);
    if (++this.#received === this.#expected) this.#resolve();
    return undefined;
  };

  /** Waits for every expected stream and builds the session's channels. */
  async ready(conn: SpdyConnection, creationTimeoutMs: number): Promise<Channels | undefined> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    // Resolves true on timeout, false when the connection ended, undefined when ready.
    const timedOut = new Promise<boolean>((r) => {
      timer = setTimeout(() => r(true), creationTimeoutMs);
    });
    const ended = conn.done.then(() => false);
    const outcome = await Promise.race([this.#ready.then(() => undefined), timedOut, ended]);
    clearTimeout(timer);
    if (outcome !== undefined) {
      log.warn(
        outcome
          ? "timed out waiting for client to create streams"
          : "client left before creating its streams",
        { expected: this.#expected, received: this.#received },
      );
      await conn.close();
      return undefined;
    }
    return this.#channels(conn);
  }

  #channels(conn: SpdyConnection): Channels {
    const s = (t: string) => this.#streams.get(t);
    const error = s("error");
    const stdin = this.#opts.stdin ? s("stdin") : undefined;
    const stdout = this.#opts.stdout ? s("stdout") : undefined;
    const stderr = this.#opts.stderr && !this.#opts.tty ? s("stderr") : undefined;
    const resize = this.#opts.tty ? s("resize") : undefined;
    // The oldest protocol tears its error stream down at once: it reports nothing.
    if (this.#protocol === "channel.k8s.io") void error?.reset();
    const protocol = this.#protocol;
    return {
      io: {
        stdin: stdin?.readable,
        stdout: stdout?.writable(),
        stderr: stderr?.writable(),
        tty: this.#opts.tty,
        resize: resize ? decodeResizes(resize.readable) : undefined,
      },
      async finish(outcome: Outcome): Promise<void> {
        try {
          for (const out of [stdout, stderr]) await out?.closeWrite();
          const bytes = encodeOutcome(protocol, outcome);
          if (error && !error.writeClosed) {
            if (bytes) await error.write(bytes);
            await error.closeWrite();
          }
        } catch (err) {
          log.debug("remotecommand: client gone before the outcome", { error: String(err) });
        } finally {
          await conn.close();
        }
      },
    };
  }
}
