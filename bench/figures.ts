/**
 * What the benchmark reports: one {@link Figure} per measured quantity, with
 * berth's and containerd's (and for some, runc's) samples summarised as
 * median and p90, the ratio berth/containerd, and the target it is held to.
 * A side that could not be measured carries the reason instead of a number.
 * @module
 */

/** Samples of one side of a figure, summarised. */
export interface Measured {
  median: number;
  p90: number;
  /** How many samples. */
  n: number;
  samples: number[];
}

/** A side that was not measured, and why. */
export interface NotMeasured {
  na: string;
}

/** One side of a figure. */
export type Side = Measured | NotMeasured;

/** A ratio target: the ratio berth/containerd must be `op` `value`. */
export interface Target {
  op: "<=" | ">=";
  value: number;
}

/** One line of the report. */
export interface Figure {
  /** Workload number and name, e.g. "1. run --rm, sequential". */
  workload: string;
  /** What is measured, e.g. "latency". */
  metric: string;
  unit: string;
  /** Which direction is better (for reading the ratio). */
  better: "lower" | "higher";
  /** Label of the berth side, e.g. "berth client+daemon+shim". */
  berthLabel: string;
  /** Label of the containerd side. */
  containerdLabel: string;
  berth: Side;
  containerd: Side;
  /** The floor (runc alone), for the run --rm latency. */
  runc?: Side;
  /** berth median / containerd median, or null when either side is n/a. */
  ratio: number | null;
  /** berth median / runc median, when there is a runc side. */
  ratioRunc?: number | null;
  target?: Target;
  /** Whether the ratio meets the target; null when it cannot be judged. */
  met: boolean | null;
  note?: string;
}

/** The value at quantile `q` (0..1) of `values`, interpolating between ranks. */
export function quantile(values: number[], q: number): number {
  if (values.length === 0) throw new RangeError("quantile of no values");
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos), hi = Math.ceil(pos);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Summarises samples; no samples is an error (a side with none is {@link NotMeasured}). */
export function measured(samples: number[]): Measured {
  return {
    median: quantile(samples, 0.5),
    p90: quantile(samples, 0.9),
    n: samples.length,
    samples,
  };
}

/** A side that was not measured, with the reason on one line. */
export function notMeasured(reason: string): NotMeasured {
  // Tools spread one error over lines (ctr quotes the shim's own stderr); keep it all.
  const text = reason.split("\n").map((l) => l.trim()).filter(Boolean).join(" ") ||
    "no reason given";
  return { na: text.length > 300 ? text.slice(0, 297) + "..." : text };
}

/** True when a side carries numbers. */
export function isMeasured(s: Side | undefined): s is Measured {
  return s !== undefined && "median" in s;
}

/** The fields of a figure the workload supplies; ratio and verdict are computed. */
export type FigureInput = Omit<Figure, "ratio" | "ratioRunc" | "met">;

/** Completes a figure: ratios and whether its target is met. */
export function figure(f: FigureInput): Figure {
  const ratio = isMeasured(f.berth) && isMeasured(f.containerd) && f.containerd.median !== 0
    ? f.berth.median / f.containerd.median
    : null;
  const out: Figure = { ...f, ratio, met: null };
  if (f.runc !== undefined) {
    out.ratioRunc = isMeasured(f.berth) && isMeasured(f.runc) && f.runc.median !== 0
      ? f.berth.median / f.runc.median
      : null;
  }
  if (f.target && ratio !== null) {
    out.met = f.target.op === "<=" ? ratio <= f.target.value : ratio >= f.target.value;
  }
  return out;
}
