/**
 * Go's duration syntax ("500ms", "1m30s", "1.5h"), the one grammar behind
 * the client's --timeout flags and the durations in the daemon's config.
 * Dependency-free, so the client's start-up loads nothing more for it.
 * @module
 */

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  "µs": 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/**
 * Milliseconds in `text`, a sequence of decimal numbers each with a unit
 * (ns, us, µs, ms, s, m, h); undefined when `text` is empty or not wholly
 * such a sequence. Callers decide what a bare number means and word their
 * own error.
 */
export function parseGoDuration(text: string): number | undefined {
  const re = /(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)/y;
  let total = 0;
  while (re.lastIndex < text.length) {
    const m = re.exec(text);
    if (m === null) return undefined;
    total += Number(m[1]) * UNIT_MS[m[2]];
  }
  return text === "" ? undefined : total;
}
