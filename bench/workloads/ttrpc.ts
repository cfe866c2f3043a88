/**
 * Workload 4: ttrpc unary round trips per second, 1 and 32 calls in flight,
 * berth's server against the Go server in containerd-shim-runc-v2. The
 * measurement itself lives in bench/ttrpc.ts (written with berth's ttrpc
 * code); this file finds it, calls it and reads its numbers.
 *
 * Contract with bench/ttrpc.ts: it exports an async function (preferably
 * named `benchTtrpc`) taking `{ quick: boolean, durationMs: number, rounds: number }`
 * and returning (or a JSON string of) numbers in calls per second, one number
 * or an array of per-round numbers for each of berth and go at 1 and 32 in
 * flight, e.g. `{ berth: { "1": 9000, "32": 30000 }, go: { "1": 8000, "32": 25000 } }`
 * or `[{ server: "berth", inflight: 1, callsPerSec: 9000 }, ...]`.
 * A side it could not measure may be given as a string (the reason).
 * @module
 */

import type { BenchContext, Workload } from "../context.ts";
import { type Figure, figure, measured, notMeasured, type Side } from "../figures.ts";

type Found = Map<string, number[] | string>;

const KEYS = ["berth@1", "berth@32", "go@1", "go@32"] as const;

function sideOf(path: string): "berth" | "go" | null {
  const p = path.toLowerCase();
  if (p.includes("berth")) return "berth";
  if (/\bgo\b|golang|containerd|runc|shim/.test(p.replace(/[._/-]/g, " "))) return "go";
  return null;
}

function inflightOf(path: string): 1 | 32 | null {
  if (/(^|\D)32(\D|$)/.test(path)) return 32;
  if (/(^|\D)1(\D|$)/.test(path)) return 1;
  return null;
}

/**
 * Reads the four series out of whatever shape bench/ttrpc.ts returned, by
 * the words on the path to each number (berth / go, 1 / 32).
 */
export function readTtrpcResult(value: unknown): Found {
  const found: Found = new Map();
  const put = (path: string, v: number[] | string) => {
    const side = sideOf(path), inflight = inflightOf(path);
    if (side && inflight && !found.has(`${side}@${inflight}`)) found.set(`${side}@${inflight}`, v);
  };
  const walk = (v: unknown, path: string) => {
    if (typeof v === "number" && Number.isFinite(v)) return put(path, [v]);
    if (typeof v === "string") return put(path, v);
    if (Array.isArray(v)) {
      if (v.length > 0 && v.every((x) => typeof x === "number")) return put(path, v as number[]);
      v.forEach((x, i) => {
        // Records like { server: "berth", inflight: 32, callsPerSec: n } name themselves.
        if (x && typeof x === "object" && !Array.isArray(x)) {
          const rec = x as Record<string, unknown>;
          const label = Object.entries(rec)
            .filter(([, y]) =>
              typeof y === "string" || (typeof y === "number" && (y === 1 || y === 32))
            )
            .map(([k, y]) => `${k}=${y}`).join(" ");
          const nums = Object.entries(rec).filter(([, y]) =>
            typeof y === "number" && y !== 1 && y !== 32
          );
          if (label && nums.length === 1) return put(`${path} ${label}`, [nums[0][1] as number]);
        }
        walk(x, `${path}/${i}`);
      });
      return;
    }
    if (v && typeof v === "object") {
      for (const [k, x] of Object.entries(v as Record<string, unknown>)) walk(x, `${path}/${k}`);
    }
  };
  walk(typeof value === "string" ? JSON.parse(value) : value, "");
  return found;
}

type BenchFn = (opts: { quick: boolean; durationMs: number; rounds: number }) => unknown;

function pickFunction(mod: Record<string, unknown>): BenchFn | null {
  const fns = Object.entries(mod).filter(([, v]) => typeof v === "function") as [string, BenchFn][];
  const byName = (re: RegExp) => fns.find(([k]) => re.test(k))?.[1];
  return byName(/^benchTtrpc$/) ?? byName(/ttrpc/i) ?? byName(/bench/i) ?? byName(/^default$/) ??
    (fns.length === 1 ? fns[0][1] : null);
}

/** Workload 4: calls bench/ttrpc.ts when it exists. */
export const ttrpc: Workload = {
  id: 4,
  name: "ttrpc unary round trips",
  async run(ctx: BenchContext) {
    const path = `${ctx.repoRoot}/bench/ttrpc.ts`;
    let found: Found = new Map();
    let reason: string | null = null;
    try {
      Deno.statSync(path);
    } catch {
      reason = "bench/ttrpc.ts does not exist yet";
    }
    if (reason === null) {
      ctx.progress("4. ttrpc round trips (bench/ttrpc.ts)");
      try {
        const mod = await import(new URL(`file://${path}`).href);
        const fn = pickFunction(mod);
        if (!fn) {
          reason = "bench/ttrpc.ts exports no benchmark function";
        } else {
          const out = await fn({
            quick: ctx.quick,
            durationMs: ctx.params.rpcDurationMs,
            rounds: ctx.params.rpcRounds,
          });
          found = readTtrpcResult(out);
          const missing = KEYS.filter((k) => !found.has(k));
          if (missing.length === KEYS.length) {
            reason = `bench/ttrpc.ts returned a shape this harness cannot read: ${
              JSON.stringify(out).slice(0, 160)
            }`;
          }
        }
      } catch (err) {
        reason = `bench/ttrpc.ts failed: ${(err as Error).message}`;
      }
    }
    const side = (key: string): Side => {
      if (reason !== null) return notMeasured(reason);
      const v = found.get(key);
      if (v === undefined) return notMeasured(`bench/ttrpc.ts gave no ${key} figure`);
      if (typeof v === "string") return notMeasured(v);
      return measured(v);
    };
    const figures: Figure[] = [];
    for (const inflight of [1, 32]) {
      figures.push(figure({
        workload: `4. ttrpc unary, ${inflight} in flight`,
        metric: "throughput",
        unit: "calls/s",
        better: "higher",
        berthLabel: "berth ttrpc server",
        containerdLabel: "Go ttrpc (containerd-shim-runc-v2)",
        berth: side(`berth@${inflight}`),
        containerd: side(`go@${inflight}`),
        target: { op: ">=", value: 1.0 },
        note: "same berth client for both servers",
      }));
    }
    return figures;
  },
};
