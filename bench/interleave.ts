/**
 * Interleaved rounds: in each round every contender runs once, in an order
 * that alternates from round to round, so a burst of machine noise lands on
 * all of them alike instead of on whichever happened to run then.
 * @module
 */

import { measured, notMeasured, type Side } from "./figures.ts";

/** One contender: a measurement that yields a number, or throws why it cannot. */
export interface Contender {
  name: string;
  /** Set when the contender is known to be unavailable before any round. */
  unavailable?: string | null;
  /** Measures once (round `i`); throws {@link Unavailable} or any error to give up on it. */
  once(i: number): Promise<number>;
}

/** Thrown by a measurement to say its side cannot be measured (with the reason). */
export class Unavailable extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = "Unavailable";
  }
}

/**
 * Runs `rounds` rounds of all contenders and returns each one's samples
 * summarised, or the reason it was not measured. A contender that fails
 * once is dropped for the rest (a half-measured side is not a figure).
 * `warmup` extra rounds run first and are not counted.
 */
export async function interleave(
  rounds: number,
  contenders: Contender[],
  progress?: (msg: string) => void,
  opts: { warmup?: number } = {},
): Promise<Record<string, Side>> {
  const samples = new Map<string, number[]>();
  const failed = new Map<string, string>();
  for (const c of contenders) {
    samples.set(c.name, []);
    if (c.unavailable) failed.set(c.name, c.unavailable);
  }
  // Untimed warm-up runs (negative round numbers) fill caches first.
  const warmup = opts.warmup ?? 0;
  for (let i = -warmup; i < rounds; i++) {
    const order = i % 2 === 0 ? contenders : [...contenders].reverse();
    for (const c of order) {
      if (failed.has(c.name)) continue;
      try {
        const v = await c.once(i);
        if (i >= 0) samples.get(c.name)!.push(v);
      } catch (err) {
        const reason = err instanceof Error ? err.message : String(err);
        failed.set(c.name, reason);
        progress?.(`  ${c.name}: n/a (${notMeasured(reason).na})`);
      }
    }
  }
  const out: Record<string, Side> = {};
  for (const c of contenders) {
    const why = failed.get(c.name);
    out[c.name] = why !== undefined ? notMeasured(why) : measured(samples.get(c.name)!);
  }
  return out;
}
