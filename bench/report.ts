/**
 * The benchmark's outputs: a Markdown table for people, JSON for tools, and
 * an SVG bar chart of the ratios berth/containerd with a line at 1.0 and
 * each target marked. The SVG is written by hand (no chart dependency).
 * @module
 */

import { type Figure, isMeasured, type Side } from "./figures.ts";

/** Facts about the run printed beside the numbers. */
export interface RunInfo {
  date: string;
  mode: "full" | "quick";
  machine: { cores: number; memoryGiB: number; kernel: string; cpu: string };
  versions: Record<string, string>;
}

/** Formats a value of `unit` with sensible precision. */
export function formatValue(v: number, unit: string): string {
  if (unit === "calls/s") return Math.round(v).toLocaleString("en-US");
  if (unit === "MiB") return v.toFixed(v < 10 ? 2 : 1);
  if (v >= 100) return v.toFixed(0);
  return v.toFixed(1);
}

function cell(s: Side | undefined, unit: string, notes: string[]): string {
  if (s === undefined) return "";
  if (isMeasured(s)) return `${formatValue(s.median, unit)} / ${formatValue(s.p90, unit)}`;
  let i = notes.indexOf(s.na);
  if (i < 0) i = notes.push(s.na) - 1;
  return `n/a [${i + 1}]`;
}

function ratioText(r: number | null | undefined): string {
  return r === null || r === undefined ? "n/a" : `${r.toFixed(2)}x`;
}

function verdict(f: Figure): string {
  if (!f.target) return "";
  if (f.met === null) return "not measured";
  return f.met ? "met" : "NOT met";
}

/** The Markdown table (with numbered n/a reasons below it). */
export function markdownTable(figures: Figure[], info: RunInfo): string {
  const notes: string[] = [];
  const lines = [
    `berth vs containerd ${info.versions.containerd ?? ""} (${info.mode} run, ${
      shortDate(info.date)
    }, ` +
    `${info.machine.cores} cores, ${info.machine.memoryGiB} GiB, ${info.machine.cpu})`,
    "",
    "| Workload | Unit | berth median / p90 | containerd median / p90 | runc median / p90 | berth/containerd | berth/runc | Target | |",
    "|---|---|---|---|---|---|---|---|---|",
  ];
  for (const f of figures) {
    const target = f.target ? `${f.target.op} ${f.target.value.toFixed(2)}x` : "";
    lines.push(
      `| ${f.workload} | ${f.unit} | ${cell(f.berth, f.unit, notes)} | ${
        cell(f.containerd, f.unit, notes)
      } | ` +
        `${cell(f.runc, f.unit, notes)} | ${ratioText(f.ratio)} | ${
          f.runc ? ratioText(f.ratioRunc) : ""
        } | ` +
        `${target} | ${verdict(f)} |`,
    );
  }
  if (notes.length > 0) {
    lines.push("", "n/a reasons:");
    notes.forEach((n, i) => lines.push(`[${i + 1}] ${n.replaceAll("|", "\\|")}`));
  }
  const judged = figures.filter((f) => f.target);
  const met = judged.filter((f) => f.met === true).length;
  const notMet = judged.filter((f) => f.met === false).length;
  const unknown = judged.length - met - notMet;
  lines.push(
    "",
    `Targets: ${met} met, ${notMet} not met, ${unknown} not measured (of ${judged.length}).`,
  );
  return lines.join("\n");
}

/** "2026-01-02T03:04:05.678Z" as "2026-01-02 03:04 UTC". */
export function shortDate(iso: string): string {
  return iso.replace(/^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2}).*$/, "$1 $2 UTC");
}

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

/**
 * An SVG bar chart: one bar per figure for the ratio berth/containerd, a
 * dashed line at 1.0, a marker at each target, green when the target is
 * met, red when not, blue when there is no target, and "n/a" otherwise.
 */
export function svgChart(figures: Figure[], info: RunInfo): string {
  const rowH = 24, top = 56, labelW = 360, chartW = 460, right = 170;
  const width = labelW + chartW + right;
  const height = top + figures.length * rowH + 48;
  const maxRatio = Math.min(
    4,
    Math.max(2, ...figures.map((f) => f.ratio ?? 0), ...figures.map((f) => f.target?.value ?? 0)) *
      1.1,
  );
  const x = (r: number) => labelW + (Math.min(r, maxRatio) / maxRatio) * chartW;
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      `font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="15" font-weight="bold">berth / containerd, ratio of medians (${info.mode} run)</text>`,
    `<text x="10" y="38" fill="#555">${
      esc(
        `${shortDate(info.date)} · ${info.machine.cores} cores, ${info.machine.memoryGiB} GiB · ` +
          `lower is better for times and memory, higher for calls/s · ▼ target · ` +
          `green met, red not met, blue no target`,
      )
    }</text>`,
  );
  // Grid lines at each half step, the 1.0 line stronger.
  for (let g = 0; g <= maxRatio + 1e-9; g += 0.5) {
    const gx = x(g);
    const one = Math.abs(g - 1) < 1e-9;
    out.push(
      `<line x1="${gx}" y1="${top - 6}" x2="${gx}" y2="${top + figures.length * rowH}" ` +
        (one ? `stroke="#000" stroke-width="1.5" stroke-dasharray="5,3"/>` : `stroke="#ddd"/>`),
      `<text x="${gx}" y="${top + figures.length * rowH + 16}" text-anchor="middle" fill="#555">${
        g.toFixed(1)
      }</text>`,
    );
  }
  figures.forEach((f, i) => {
    const y = top + i * rowH;
    const label = `${f.workload}${f.better === "higher" ? " (higher better)" : ""}`;
    out.push(`<text x="${labelW - 8}" y="${y + 16}" text-anchor="end">${esc(label)}</text>`);
    if (f.ratio === null) {
      out.push(`<text x="${labelW + 6}" y="${y + 16}" fill="#888">n/a</text>`);
    } else {
      const color = f.met === true ? "#2e7d32" : f.met === false ? "#c62828" : "#1565c0";
      const w = Math.max(1, x(f.ratio) - labelW);
      out.push(
        `<rect x="${labelW}" y="${y + 4}" width="${w.toFixed(1)}" height="${
          rowH - 8
        }" fill="${color}"/>`,
        // A bar cut at the axis end carries its value inside, so it never runs into the target column.
        f.ratio > maxRatio
          ? `<text x="${(labelW + w - 4).toFixed(1)}" y="${
            y + 16
          }" text-anchor="end" fill="#fff" ` +
            `font-weight="bold">${f.ratio.toFixed(2)}x →</text>`
          : `<text x="${(labelW + w + 4).toFixed(1)}" y="${y + 16}">${f.ratio.toFixed(2)}x</text>`,
      );
    }
    if (f.target) {
      const tx = x(f.target.value);
      out.push(
        `<path d="M${tx - 5},${y + 1} L${tx + 5},${y + 1} L${tx},${y + 8} Z" fill="#000"/>`,
        `<line x1="${tx}" y1="${y + 2}" x2="${tx}" y2="${
          y + rowH - 2
        }" stroke="#000" stroke-width="1"/>`,
      );
      const v = f.met === null ? "" : f.met ? "met" : "not met";
      out.push(
        `<text x="${labelW + chartW + 40}" y="${y + 16}" fill="#333">${
          esc(`${f.target.op} ${f.target.value}x ${v}`)
        }</text>`,
      );
    }
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}

/** The JSON document: run facts, every figure with its samples, and the clean-up check. */
export function jsonReport(
  figures: Figure[],
  info: RunInfo,
  extra: Record<string, unknown>,
): string {
  return JSON.stringify({ ...info, ...extra, figures }, null, 2) + "\n";
}
