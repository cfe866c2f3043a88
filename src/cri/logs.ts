/**
 * A container's output as the kubelet reads it: the daemon copies the
 * task's stdout and stderr fifos into the container's LogPath in the CRI
 * log format, one record per line, `<RFC3339Nano> <stream> <F|P> <text>`
 * (P: a partial line, cut at the buffer size; F: the line's last piece).
 * @module
 */

import { close, mkfifo, openFifo, readFd } from "../../ffi/mod.ts";

/** The longest piece of a line written as one record (containerd's default). */
export const MAX_RECORD = 16 * 1024;

/** `d` in Go's RFC3339Nano layout, in UTC (trailing zeros of the fraction dropped). */
export function rfc3339Nano(d: Date, nanos = d.getUTCMilliseconds() * 1e6): string {
  const base = d.toISOString().slice(0, 19);
  const frac = String(nanos).padStart(9, "0").replace(/0+$/, "");
  return `${base}${frac === "" ? "" : "." + frac}Z`;
}

/** One record of the CRI log format. */
export function formatRecord(
  time: Date,
  stream: "stdout" | "stderr",
  partial: boolean,
  text: Uint8Array,
): Uint8Array {
  const head = new TextEncoder().encode(`${rfc3339Nano(time)} ${stream} ${partial ? "P" : "F"} `);
  const out = new Uint8Array(head.length + text.length + 1);
  out.set(head);
  out.set(text, head.length);
  out[out.length - 1] = 0x0a;
  return out;
}

/** Splits output into records: whole lines (F), and pieces of long lines (P); keeps the rest. */
export class LineSplitter {
  #pending = new Uint8Array(0);

  /** Records for `chunk`, appended to what an earlier chunk left. */
  push(chunk: Uint8Array): { partial: boolean; text: Uint8Array }[] {
    const buf = new Uint8Array(this.#pending.length + chunk.length);
    buf.set(this.#pending);
    buf.set(chunk, this.#pending.length);
    const out: { partial: boolean; text: Uint8Array }[] = [];
    let start = 0;
    for (;;) {
      const nl = buf.indexOf(0x0a, start);
      if (nl < 0) break;
      out.push(...this.#cut(buf.subarray(start, nl)));
      start = nl + 1;
    }
    let rest = buf.subarray(start);
    while (rest.length >= MAX_RECORD) {
      out.push({ partial: true, text: rest.slice(0, MAX_RECORD) });
      rest = rest.subarray(MAX_RECORD);
    }
    this.#pending = rest.slice();
    return out;
  }

  /** What is left (a last line without a newline), as a final record. */
  flush(): { partial: boolean; text: Uint8Array }[] {
    if (this.#pending.length === 0) return [];
    const text = this.#pending;
    this.#pending = new Uint8Array(0);
    return [{ partial: false, text }];
  }

  /** A whole line as records: pieces of at most MAX_RECORD, the last one F. */
  #cut(line: Uint8Array): { partial: boolean; text: Uint8Array }[] {
    const out: { partial: boolean; text: Uint8Array }[] = [];
    while (line.length > MAX_RECORD) {
      out.push({ partial: true, text: line.slice(0, MAX_RECORD) });
      line = line.subarray(MAX_RECORD);
    }
    out.push({ partial: false, text: line.slice() });
    return out;
  }
}

/** The log file of one container; writes are serialised, and it can be reopened after rotation. */
export class ContainerLog {
  #file: Deno.FsFile | undefined;
  #queue: Promise<void> = Promise.resolve();

  private constructor(readonly path: string) {}

  /** Opens (creating, appending) the log at `path`; its directory must exist. */
  static async open(path: string): Promise<ContainerLog> {
    const log = new ContainerLog(path);
    log.#file = await Deno.open(path, { write: true, append: true, create: true, mode: 0o640 });
    return log;
  }

  /** Appends records of `stream`. */
  write(stream: "stdout" | "stderr", records: { partial: boolean; text: Uint8Array }[]): void {
    if (records.length === 0) return;
    const now = new Date();
    this.#queue = this.#queue.then(async () => {
      for (const r of records) {
        const bytes = formatRecord(now, stream, r.partial, r.text);
        let off = 0;
        while (this.#file && off < bytes.length) off += await this.#file.write(bytes.subarray(off));
      }
    }).catch(() => {});
  }

  /** Closes the file and opens `path` again (the kubelet moved the old one away). */
  reopen(): Promise<void> {
    const next = this.#queue.then(async () => {
      this.#file?.close();
      this.#file = await Deno.open(this.path, {
        write: true,
        append: true,
        create: true,
        mode: 0o640,
      });
    });
    this.#queue = next.catch(() => {});
    return next;
  }

  /** Waits for pending writes and closes the file. */
  async close(): Promise<void> {
    await this.#queue;
    try {
      this.#file?.close();
    } catch { /* closed */ }
    this.#file = undefined;
  }
}

/**
 * Reads the fifo at `path` (made here when missing), handing each chunk to
 * `onData` (awaited: a slow reader slows the reading), until `stop` aborts; then takes what is buffered and returns.
 * The fifo is held open read-write so that the shim opening and closing
 * its end never ends the reading early.
 */
export async function readFifo(
  path: string,
  onData: (chunk: Uint8Array) => void | Promise<void>,
  stop: AbortSignal,
): Promise<void> {
  try {
    mkfifo(path, 0o600);
  } catch { /* made before */ }
  const fd = openFifo(path, "readwrite");
  const buf = new Uint8Array(64 * 1024);
  let draining = stop.aborted;
  try {
    for (;;) {
      let n: number;
      try {
        // Once stopped, read only what is buffered already.
        n = await readFd(fd, buf, { signal: draining ? AbortSignal.timeout(50) : stop });
      } catch (err) {
        if (draining) break;
        if (!stop.aborted) throw err;
        draining = true;
        continue;
      }
      if (n === 0) break;
      await onData(buf.slice(0, n));
    }
  } finally {
    close(fd);
  }
}

/**
 * Copies the fifo at `path` into `log` as `stream` (see {@link readFifo}),
 * handing each raw chunk to `tap` too.
 */
export async function copyFifo(
  path: string,
  stream: "stdout" | "stderr",
  log: ContainerLog,
  stop: AbortSignal,
  tap?: (chunk: Uint8Array) => void,
): Promise<void> {
  const split = new LineSplitter();
  try {
    await readFifo(path, (chunk) => {
      log.write(stream, split.push(chunk));
      tap?.(chunk);
    }, stop);
  } finally {
    log.write(stream, split.flush());
  }
}
