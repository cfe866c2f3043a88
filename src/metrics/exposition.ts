/**
 * The Prometheus exposition formats: text 0.0.4 (what every scraper reads)
 * and OpenMetrics 1.0 (when the scraper's Accept header asks for it). One
 * in-memory description of metric families renders to either; the only
 * differences that matter here are the counter family name (OpenMetrics
 * names the family without `_total`), the content type and the `# EOF`.
 * @module
 */

/** One sample: labels and a value; `suffix` is `_bucket`, `_sum`, `_count` for histograms. */
export interface Sample {
  suffix?: string;
  labels: Record<string, string>;
  value: number;
}

/** A metric family: every sample of one name, with its help and type. */
export interface Family {
  /** The sample name (for a counter, with its `_total`). */
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  samples: Sample[];
}

/** Content type of the text format 0.0.4. */
export const TEXT_TYPE = "text/plain; version=0.0.4; charset=utf-8";
/** Content type of OpenMetrics 1.0. */
export const OPENMETRICS_TYPE = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/** True when an Accept header prefers OpenMetrics (Prometheus asks for it first when it can). */
export function wantsOpenMetrics(accept: string | null): boolean {
  return accept !== null && /application\/openmetrics-text/.test(accept);
}

function escapeLabel(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

function escapeHelp(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

/** Renders `families` (those with no samples left out) in the text format or OpenMetrics. */
export function render(families: readonly Family[], openMetrics: boolean): string {
  const out: string[] = [];
  for (const f of families) {
    if (f.samples.length === 0) continue;
    const family = openMetrics && f.type === "counter" ? f.name.replace(/_total$/, "") : f.name;
    out.push(`# HELP ${family} ${escapeHelp(f.help)}`, `# TYPE ${family} ${f.type}`);
    for (const s of f.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
      const name = f.name + (s.suffix ?? "");
      out.push(`${name}${labels.length ? `{${labels.join(",")}}` : ""} ${formatValue(s.value)}`);
    }
  }
  if (openMetrics) out.push("# EOF");
  return out.join("\n") + "\n";
}
