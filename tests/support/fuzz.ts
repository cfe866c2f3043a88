/**
 * What the fuzzers share: a small seeded PRNG (so that a failure replays
 * from the seed it prints), the number of cases for this run (a few
 * thousand in `make test`, 100k under `BERTH_STRESS=1`), byte mutations,
 * and a bound on the time of one case.
 *
 * `BERTH_FUZZ_SEED=<n>` replays a run; `BERTH_FUZZ_CASES=<n>` sets the count.
 */

/** sfc32: four 32-bit words of state, fast, and good enough to find bugs. */
export class Rng {
  #a: number;
  #b: number;
  #c: number;
  #d: number;

  /** A generator whose whole sequence follows from `seed`. */
  constructor(readonly seed: number) {
    this.#a = 0x9e3779b9;
    this.#b = 0x243f6a88;
    this.#c = 0xb7e15162;
    this.#d = seed >>> 0;
    for (let i = 0; i < 16; i++) this.u32();
  }

  /** The next 32-bit unsigned value. */
  u32(): number {
    const t = (((this.#a + this.#b) | 0) + this.#d) | 0;
    this.#d = (this.#d + 1) | 0;
    this.#a = this.#b ^ (this.#b >>> 9);
    this.#b = (this.#c + (this.#c << 3)) | 0;
    this.#c = (this.#c << 21) | (this.#c >>> 11);
    this.#c = (this.#c + t) | 0;
    return t >>> 0;
  }

  /** An integer in [0, n). */
  int(n: number): number {
    return n <= 0 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.u32() / 0x1_0000_0000 < p;
  }

  /** One element of `xs`. */
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)];
  }

  /** `n` random bytes. */
  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }

  /** A string of up to `max` characters, mostly from `alphabet`, sometimes anything. */
  string(max: number, alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_./:@=~!\"' \\*"): string {
    const n = this.int(max + 1);
    let s = "";
    for (let i = 0; i < n; i++) {
      s += this.chance(0.05)
        ? String.fromCodePoint(
          this.pick([0, 0x7f, 0xff, 0x2028, 0xfffd, 0x1f600, this.int(0xd800)]),
        )
        : alphabet[this.int(alphabet.length)];
    }
    return s;
  }
}

/** True when the long forms run (`make stress`). */
export const STRESS = Deno.env.get("BERTH_STRESS") === "1";

/**
 * The seed of fuzzer `name`: `BERTH_FUZZ_SEED` when set, else a fresh one.
 * Printed either way, so that any failure can be replayed.
 */
export function fuzzSeed(name: string): number {
  const env = Deno.env.get("BERTH_FUZZ_SEED");
  const seed = env !== undefined && /^\d+$/.test(env)
    ? Number(env) >>> 0
    : crypto.getRandomValues(new Uint32Array(1))[0];
  console.log(`fuzz ${name}: seed ${seed} (replay with BERTH_FUZZ_SEED=${seed})`);
  return seed;
}

/** Cases to run: `BERTH_FUZZ_CASES`, else `stress` under BERTH_STRESS=1, else `quick`. */
export function fuzzCases(quick: number, stress = 100_000): number {
  const env = Deno.env.get("BERTH_FUZZ_CASES");
  if (env !== undefined && /^\d+$/.test(env)) return Number(env);
  return STRESS ? stress : quick;
}

/** One line saying what a fuzzer did and found (the summary `make stress` prints). */
export function fuzzSummary(name: string, seed: number, cases: number, found: string): void {
  console.log(`fuzz ${name}: ${cases} cases, seed ${seed}: ${found}`);
}

const INTERESTING = [0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x0a, 0x2f, 0x2e];

/** A mutation of `input`: bit flips, byte overwrites, inserts, deletes, truncation, splices. */
export function mutate(rng: Rng, input: Uint8Array, maxLen = 1 << 16): Uint8Array<ArrayBuffer> {
  let out = input.slice() as Uint8Array<ArrayBuffer>;
  const rounds = 1 + rng.int(4);
  for (let r = 0; r < rounds; r++) {
    const at = rng.int(out.length + 1);
    switch (rng.int(7)) {
      case 0: // flip a bit
        if (out.length > 0) out[at % out.length] ^= 1 << rng.int(8);
        break;
      case 1: // overwrite with an interesting byte
        if (out.length > 0) out[at % out.length] = rng.pick(INTERESTING);
        break;
      case 2: { // insert random bytes
        const ins = rng.bytes(1 + rng.int(16));
        out = concat(out.subarray(0, at), ins, out.subarray(at));
        break;
      }
      case 3: // delete a run
        out = concat(out.subarray(0, at), out.subarray(at + 1 + rng.int(16)));
        break;
      case 4: // truncate
        out = out.slice(0, at);
        break;
      case 5: { // duplicate a run (repeated fields, nested lengths)
        const len = rng.int(Math.min(64, out.length - at) + 1);
        out = concat(out.subarray(0, at + len), out.subarray(at, at + len), out.subarray(at + len));
        break;
      }
      default: // a 4-byte big or little value, the kind lengths are made of
        if (out.length >= 4) {
          const v = rng.pick([0, 1, 0x7fffffff, 0xffffffff, 0x80000000, rng.u32()]);
          const p = at % (out.length - 3);
          new DataView(out.buffer, out.byteOffset).setUint32(p, v, rng.chance(0.5));
        }
    }
  }
  return out.length > maxLen ? out.slice(0, maxLen) : out;
}

/** Joins byte arrays. */
export function concat(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

/** Resolves with `p`, or rejects naming `what` if it takes longer than `ms`. */
export async function bounded<T>(what: string, ms: number, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms (a hang)`)), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every path below `dir`, relative and sorted (for checking that nothing appeared beside a root). */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (rel: string) => {
    for (const e of Deno.readDirSync(rel === "" ? dir : `${dir}/${rel}`)) {
      const name = rel === "" ? e.name : `${rel}/${e.name}`;
      out.push(name); // one at a time: a spread of a million names overflows the stack
      if (e.isDirectory) walk(name);
    }
  };
  walk("");
  return out.sort();
}
