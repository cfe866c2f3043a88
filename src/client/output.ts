/**
 * Output shapes of the client: aligned tables laid out the way Go's
 * text/tabwriter lays out ctr's (so scripts written for ctr's columns keep
 * working), JSON for `--format json`, and human sizes and ages.
 * @module
 */

import type { FlagSpec, FlagValues } from "./cli.ts";

/** Layout parameters, named as Go's tabwriter.NewWriter takes them. */
export interface TableStyle {
  /** Smallest cell width, padding included. */
  minWidth: number;
  /** Width of a tab when `padChar` is "\t". */
  tabWidth: number;
  /** Added to the widest cell of a column. */
  padding: number;
  /** " " pads with spaces; "\t" pads with tabs (widths rounded up to tabWidth). */
  padChar: " " | "\t";
}

/** ctr's most common table: tabwriter.NewWriter(out, 1, 8, 1, ' ', 0). */
export const NARROW: TableStyle = { minWidth: 1, tabWidth: 8, padding: 1, padChar: " " };
/** ctr's containers/tasks/plugins tables: tabwriter.NewWriter(out, 4, 8, 4, ' ', 0). */
export const WIDE: TableStyle = { minWidth: 4, tabWidth: 8, padding: 4, padChar: " " };
/** ctr's content table pads with tabs: tabwriter.NewWriter(out, 1, 8, 1, '\t', 0). */
export const TABBED: TableStyle = { minWidth: 1, tabWidth: 8, padding: 1, padChar: "\t" };

/**
 * Lays out rows whose cells are "terminated" like tabwriter's: every cell
 * but the last of a row is padded to its column's width. When
 * `trailingTab` is true the last cell is terminated too (ctr's rows end in
 * "\t", which pads the last column with trailing blanks).
 *
 * Columns are aligned per block of consecutive rows having that column, as
 * tabwriter does.
 */
export function formatTable(
  rows: string[][],
  style: TableStyle = NARROW,
  trailingTab = true,
): string {
  // Cells that take part in alignment: all when trailingTab, else all but the last.
  const terminated = rows.map((r) => trailingTab ? r.length : Math.max(0, r.length - 1));
  const widths: number[][] = rows.map((r) => new Array(r.length).fill(0));
  const maxCols = Math.max(0, ...terminated);
  for (let col = 0; col < maxCols; col++) {
    let start = 0;
    while (start < rows.length) {
      if (terminated[start] <= col) {
        start++;
        continue;
      }
      let end = start;
      let w = 0;
      while (end < rows.length && terminated[end] > col) {
        w = Math.max(w, textWidth(rows[end][col]));
        end++;
      }
      w += style.padding;
      if (w < style.minWidth) w = style.minWidth;
      if (style.padChar === "\t") w = Math.ceil(w / style.tabWidth) * style.tabWidth;
      for (let i = start; i < end; i++) widths[i][col] = w;
      start = end;
    }
  }
  const lines = rows.map((r, i) => {
    let line = "";
    for (let col = 0; col < r.length; col++) {
      const cell = r[col];
      if (col >= terminated[i]) {
        line += cell;
        continue;
      }
      const pad = widths[i][col] - textWidth(cell);
      if (style.padChar === "\t") {
        line += cell + "\t".repeat(Math.max(1, Math.ceil(pad / style.tabWidth)));
      } else {
        line += cell + " ".repeat(Math.max(0, pad));
      }
    }
    return line;
  });
  return lines.join("\n") + (lines.length ? "\n" : "");
}

/** Display width of a string: counts code points (good enough for ids, refs and labels). */
function textWidth(s: string): number {
  let n = 0;
  for (const _ of s) n++;
  return n;
}

/** Writes text to stdout without adding a newline. */
export function write(text: string): void {
  if (text.length === 0) return;
  const bytes = new TextEncoder().encode(text);
  let off = 0;
  while (off < bytes.length) off += Deno.stdout.writeSync(bytes.subarray(off));
}

/** Prints a table (header first) to stdout. */
export function printTable(
  header: string[],
  rows: string[][],
  style: TableStyle = NARROW,
  trailingTab = true,
): void {
  write(formatTable([header, ...rows], style, trailingTab));
}

/** Prints a value as indented JSON (ctr's PrintAsJSON indents with tabs). */
export function printJSON(value: unknown): void {
  write(toJSON(value) + "\n");
}

/** JSON text of `value`; bigints become numbers when safe, else strings; byte arrays become base64. */
export function toJSON(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (typeof v === "bigint") return Number.isSafeInteger(Number(v)) ? Number(v) : v.toString();
    if (v instanceof Uint8Array) return btoa(String.fromCharCode(...v));
    return v;
  }, "\t");
}

/** Sizes as ctr prints them (go-units HumanSize: decimal units, 4 significant digits). */
export function humanSize(bytes: number | bigint): string {
  let n = Number(bytes);
  const units = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i++;
  }
  return `${trimNumber(n.toPrecision(4))} ${units[i]}`;
}

/** Binary sizes (go-units BytesSize: KiB, MiB ...), used by `images ls`. */
export function bytesSize(bytes: number | bigint): string {
  let n = Number(bytes);
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${trimNumber(n.toPrecision(4))} ${units[i]}`;
}

function trimNumber(s: string): string {
  return s.includes(".") && !s.includes("e") ? s.replace(/\.?0+$/, "") : s;
}

/** "3 minutes", "About an hour" ... like go-units HumanDuration, for AGE columns. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 1) return "Less than a second";
  if (s === 1) return "1 second";
  if (s < 60) return `${s} seconds`;
  const m = Math.floor(s / 60);
  if (m === 1) return "About a minute";
  if (m < 60) return `${m} minutes`;
  const h = Math.round(s / 3600);
  if (h === 1) return "About an hour";
  if (h < 48) return `${h} hours`;
  if (h < 24 * 7 * 2) return `${Math.floor(h / 24)} days`;
  if (h < 24 * 30 * 2) return `${Math.floor(h / 24 / 7)} weeks`;
  if (h < 24 * 365 * 2) return `${Math.floor(h / 24 / 30)} months`;
  return `${Math.floor(h / 24 / 365)} years`;
}

/** "k1=v1,k2=v2" sorted by key, or "-" when there are none (ctr's LABELS cells). */
export function labelsCell(labels: Record<string, string> | undefined, empty = "-"): string {
  const parts = Object.entries(labels ?? {}).map(([k, v]) => `${k}=${v}`).sort();
  return parts.length ? parts.join(",") : empty;
}

/** RFC 3339 text of a protobuf Timestamp (as Go's time.Time prints in JSON). */
export function timestampText(ts: { seconds: bigint; nanos: number } | undefined): string {
  if (ts === undefined) return "";
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6)).toISOString();
}

/** The flags of the `ls` commands: -q (it prints `quiet`, e.g. "the container id") and --format. */
export function listFlags(quiet: string): Record<string, FlagSpec> {
  return {
    quiet: { type: "boolean", short: "q", help: `print only ${quiet}` },
    format: { type: "string", help: "output format: table or json", default: "table" },
  };
}

/** How an `ls` command shows its items in each of its output shapes. */
export interface ListView<T> {
  /** The one field -q prints, a line per item. */
  key(item: T): string;
  /** An item as --format json prints it. */
  json(item: T): unknown;
  /** Prints the table (the default shape). */
  table(items: T[]): void;
}

/** Prints `items` as the flags of {@link listFlags} ask: keys only, JSON, or the table. */
export function printList<T>(flags: FlagValues, items: T[], view: ListView<T>): void {
  if (flags.quiet) { for (const item of items) console.log(view.key(item)); }
  else if (flags.format === "json") printJSON(items.map((item) => view.json(item)));
  else view.table(items);
}
