/**
 * berth's one logger. Lines have logrus' text shape, as containerd writes
 * them, so that people and tools that read containerd's logs read berth's:
 *
 *     time="2026-11-23T17:52:18.123456Z" level=info msg="shim started" id=c1
 *
 * @example
 * ```ts
 * import { log, setLogLevel } from "./mod.ts";
 * setLogLevel("debug");
 * log.info("task started", { id: "c1", pid: 42 });
 * ```
 * @module
 */

/** Levels in increasing severity, as logrus names them. */
export type Level = "trace" | "debug" | "info" | "warn" | "error" | "fatal";

const RANK: Record<Level, number> = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, fatal: 5 };

/** Structured fields appended after the message. */
export type Fields = Record<string, unknown>;

/** Where log lines go: any function that accepts a finished line. */
export type Sink = (line: string) => void;

const encoder = new TextEncoder();
let threshold = RANK.info;
let format: "text" | "json" = "text";
let sink: Sink = (line) => {
  try {
    Deno.stderr.writeSync(encoder.encode(line));
  } catch {
    // stderr gone (a detached shim whose log was closed): nothing to tell.
  }
};

/** Sets the least severe level that is written; throws on an unknown name. */
export function setLogLevel(level: string): void {
  if (!(level in RANK)) {
    throw new Error(`unknown log level "${level}" (trace, debug, info, warn, error, fatal)`);
  }
  threshold = RANK[level as Level];
}

/** Chooses logrus' text format (default) or its JSON format. */
export function setLogFormat(f: "text" | "json"): void {
  format = f;
}

/** Sends log lines somewhere other than stderr (a shim's log fifo, a test buffer). */
export function setLogSink(s: Sink): void {
  sink = s;
}

/** True when lines of `level` are written; lets callers skip building costly fields. */
export function logEnabled(level: Level): boolean {
  return RANK[level] >= threshold;
}

function quote(value: string): string {
  return /^[A-Za-z0-9_.\/:@+-]+$/.test(value) ? value : JSON.stringify(value);
}

function show(value: unknown): string {
  if (value instanceof Error) return value.message;
  if (typeof value === "string") return value;
  if (typeof value === "bigint") return value.toString();
  return JSON.stringify(value) ?? String(value);
}

/** Formats one line without writing it (exported for tests). */
export function formatLine(
  level: Level,
  msg: string,
  fields: Fields = {},
  now = new Date(),
): string {
  if (format === "json") {
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(fields)) out[k] = show(v);
    return JSON.stringify({ ...out, level, msg, time: now.toISOString() }) + "\n";
  }
  let line = `time="${now.toISOString()}" level=${level} msg=${JSON.stringify(msg)}`;
  for (const [k, v] of Object.entries(fields)) line += ` ${k}=${quote(show(v))}`;
  return line + "\n";
}

function write(level: Level, msg: string, fields?: Fields): void {
  if (RANK[level] < threshold) return;
  sink(formatLine(level, msg, fields));
}

/** The logger: one function per level. */
export const log = {
  trace: (msg: string, fields?: Fields) => write("trace", msg, fields),
  debug: (msg: string, fields?: Fields) => write("debug", msg, fields),
  info: (msg: string, fields?: Fields) => write("info", msg, fields),
  warn: (msg: string, fields?: Fields) => write("warn", msg, fields),
  error: (msg: string, fields?: Fields) => write("error", msg, fields),
};
