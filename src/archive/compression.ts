/**
 * Layer compression: detected from the stream's first bytes (as containerd
 * does), so a mislabelled layer still unpacks.
 *
 * @module
 */

import { Decompress } from "fzstd";
import { unimplemented } from "../errdefs/mod.ts";

/** Compression formats berth recognises. */
export type Compression = "none" | "gzip" | "zstd" | "bzip2" | "xz";

/** The compression `head` (the first bytes of a stream) starts with. */
export function detectCompression(head: Uint8Array): Compression {
  const starts = (...sig: number[]) => sig.every((b, i) => head[i] === b);
  if (starts(0x1f, 0x8b, 0x08)) return "gzip";
  if (starts(0x28, 0xb5, 0x2f, 0xfd)) return "zstd";
  if (starts(0x42, 0x5a, 0x68)) return "bzip2";
  if (starts(0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00)) return "xz";
  return "none";
}

/** A decoder fed one slice at a time; what it inflates goes to the `emit` it was made with. */
interface Decoder {
  write(slice: Uint8Array): void | Promise<void>;
  end(): void | Promise<void>;
  destroy(): void;
}

// Compressed bytes are fed in slices of at most this size, and the next
// slice only once everything the last one inflated to has been read: a
// decoder inflates a whole input chunk at once, and gzip inflates up to
// ~1000x (a 2 MiB gzip bomb became 2 GiB of memory when fed in one piece).
const SLICE = 16 << 10;

/**
 * The decoded form of `input`, pulled: input is read and fed only when
 * the reader wants more and everything decoded so far has been taken.
 */
function pullDecoded(
  input: ReadableStream<Uint8Array>,
  make: (emit: (chunk: Uint8Array) => void) => Decoder,
): ReadableStream<Uint8Array> {
  const out: Uint8Array[] = [];
  const decoder = make((chunk) => out.push(chunk));
  const reader = input.getReader();
  let chunk: Uint8Array | undefined;
  let off = 0;
  let finished = false;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      while (out.length === 0) {
        if (finished) {
          c.close();
          return;
        }
        if (chunk === undefined || off >= chunk.length) {
          const { value, done } = await reader.read();
          if (done) {
            await decoder.end();
            finished = true;
            continue;
          }
          chunk = value;
          off = 0;
        }
        const slice = chunk.subarray(off, off + SLICE);
        off += slice.length;
        await decoder.write(slice);
      }
      c.enqueue(out.shift()!);
    },
    cancel(reason) {
      decoder.destroy();
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

// zstd with fzstd: a maintained, pure-JavaScript streaming decoder, so no
// native module is needed.
function zstdDecoder(emit: (chunk: Uint8Array) => void): Decoder {
  const d = new Decompress((chunk) => emit(chunk));
  return {
    write: (slice) => d.push(slice),
    end: () => d.push(new Uint8Array(0), true),
    destroy: () => {},
  };
}

// gzip with node:zlib: its inflate costs the event loop about a fifth of
// what Deno's DecompressionStream does on this machine (a CPU profile of a
// 40 MiB layer: ~50 ms against ~240 ms), and the daemon's loop also hashes
// and writes.
async function gunzipDecoder(): Promise<(emit: (chunk: Uint8Array) => void) => Decoder> {
  const { createGunzip } = await import("node:zlib");
  return (emit) => {
    const g = createGunzip({ chunkSize: 256 << 10 });
    let failed: Error | undefined;
    g.on("data", (chunk: Uint8Array) => emit(chunk));
    g.on("error", (err: Error) => failed = err);
    return {
      write: (slice) =>
        new Promise<void>((resolve, reject) => {
          if (failed) return reject(failed);
          g.write(slice, (err) => (err ?? failed) ? reject(err ?? failed) : resolve());
        }),
      end: () =>
        new Promise<void>((resolve, reject) => {
          if (failed) return reject(failed);
          g.once("end", resolve);
          g.once("error", reject);
          g.end();
        }),
      destroy: () => g.destroy(),
    };
  };
}

/**
 * The uncompressed form of `input`, whatever its compression. Unsupported
 * formats are Unimplemented, naming the media type when given.
 */
export async function decompress(
  input: ReadableStream<Uint8Array>,
  mediaType?: string,
): Promise<{ stream: ReadableStream<Uint8Array>; compression: Compression }> {
  const reader = input.getReader();
  const head: Uint8Array[] = [];
  let have = 0;
  let ended = false;
  while (have < 6) {
    const { value, done } = await reader.read();
    if (done) {
      ended = true;
      break;
    }
    head.push(value);
    have += value.length;
  }
  const first = new Uint8Array(have);
  let off = 0;
  for (const h of head) {
    first.set(h, off);
    off += h.length;
  }
  const compression = detectCompression(first);
  const joined = new ReadableStream<Uint8Array>({
    start(c) {
      if (first.length > 0) c.enqueue(first);
      if (ended) c.close();
    },
    async pull(c) {
      const { value, done } = await reader.read();
      if (done) c.close();
      else c.enqueue(value);
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  }, { highWaterMark: 0 });
  switch (compression) {
    case "none":
      return { stream: joined, compression };
    case "gzip":
      return { stream: pullDecoded(joined, await gunzipDecoder()), compression };
    case "zstd":
      return { stream: pullDecoded(joined, zstdDecoder), compression };
    default:
      await joined.cancel();
      throw unimplemented(
        `${compression} layers are not supported${mediaType ? ` (media type ${mediaType})` : ""}`,
      );
  }
}
