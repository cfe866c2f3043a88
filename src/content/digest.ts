/**
 * Digest strings ("<algorithm>:<hex>") and streaming digesters.
 *
 * @module
 */

import type { Hash } from "node:crypto";
import { invalidArgument } from "../errdefs/mod.ts";

// Loaded on first use: a static node: import is evaluated at every start of
// the bundle, whatever the mode, and this one costs tens of ms and ~4 MB.
let crypto: typeof import("node:crypto") | undefined;
function createHash(algorithm: string): Hash {
  crypto ??= process.getBuiltinModule("node:crypto") as typeof import("node:crypto");
  return crypto.createHash(algorithm);
}

/** Hex length of each supported algorithm, as the OCI image spec registers them. */
const HEX_LENGTH: Record<string, number> = { sha256: 64, sha384: 96, sha512: 128 };

/** The algorithm used when the caller does not name one. */
export const CANONICAL_ALGORITHM = "sha256";

/** A digest split into its parts. */
export interface ParsedDigest {
  algorithm: string;
  hex: string;
}

/**
 * Splits and checks `digest`; throws InvalidArgument unless it is
 * `sha256:`, `sha384:` or `sha512:` followed by the right number of
 * lower-case hex digits.
 */
export function parseDigest(digest: string): ParsedDigest {
  const i = digest.indexOf(":");
  if (i <= 0) throw invalidArgument(`invalid digest ${JSON.stringify(digest)}: missing algorithm`);
  const algorithm = digest.slice(0, i);
  const hex = digest.slice(i + 1);
  const want = HEX_LENGTH[algorithm];
  if (want === undefined) {
    throw invalidArgument(
      `invalid digest ${JSON.stringify(digest)}: unsupported algorithm ${algorithm}`,
    );
  }
  if (hex.length !== want || !/^[0-9a-f]+$/.test(hex)) {
    throw invalidArgument(
      `invalid digest ${
        JSON.stringify(digest)
      }: want ${want} lower-case hex digits after "${algorithm}:"`,
    );
  }
  return { algorithm, hex };
}

/** True for a well-formed digest of a supported algorithm. */
export function isDigest(digest: string): boolean {
  try {
    parseDigest(digest);
    return true;
  } catch {
    return false;
  }
}

/**
 * Incremental hashing. node:crypto is used because WebCrypto's digest()
 * needs the whole input at once, and blobs must be hashed as they stream.
 */
export class Digester {
  private hash: Hash;
  constructor(readonly algorithm: string = CANONICAL_ALGORITHM) {
    if (!(algorithm in HEX_LENGTH)) {
      throw invalidArgument(`unsupported digest algorithm ${algorithm}`);
    }
    this.hash = createHash(algorithm);
  }
  /** Feeds more bytes. */
  update(chunk: Uint8Array): void {
    this.hash.update(chunk);
  }
  /** The digest of everything fed so far; feeding may continue afterwards. */
  digest(): string {
    return `${this.algorithm}:${this.hash.copy().digest("hex")}`;
  }
  /** Forgets everything fed so far. */
  reset(): void {
    this.hash = createHash(this.algorithm);
  }
}

/**
 * A pass-through stream that digests and counts the bytes flowing through
 * it (a layer's diff id and uncompressed size while it is applied or
 * written); read {@link DigestingStream.digest} and `size` once it ended.
 */
export class DigestingStream extends TransformStream<Uint8Array, Uint8Array> {
  readonly #digester: Digester;
  readonly #count: { bytes: number };

  constructor(algorithm: string = CANONICAL_ALGORITHM) {
    const digester = new Digester(algorithm);
    const count = { bytes: 0 };
    super({
      transform(chunk, c) {
        digester.update(chunk);
        count.bytes += chunk.length;
        c.enqueue(chunk);
      },
    });
    this.#digester = digester;
    this.#count = count;
  }

  /** The digest of what passed so far. */
  digest(): string {
    return this.#digester.digest();
  }

  /** How many bytes passed so far. */
  get size(): number {
    return this.#count.bytes;
  }
}

/** Digest of a byte string or UTF-8 text (small inputs only). */
export function digestOf(data: Uint8Array | string, algorithm = CANONICAL_ALGORITHM): string {
  const d = new Digester(algorithm);
  d.update(typeof data === "string" ? new TextEncoder().encode(data) : data);
  return d.digest();
}
