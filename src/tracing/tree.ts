/**
 * The tree of one trace as text: each span under its parent, with its start
 * offset from the trace's first span and its duration, in milliseconds.
 * @module
 */

import type { ReceivedSpan } from "./otlp.ts";

/** A span with its children, for printing and for the breakdown bench. */
export interface SpanNode {
  span: ReceivedSpan;
  children: SpanNode[];
}

/** Builds the forest of `spans` (one trace): spans whose parent is missing are roots. */
export function buildTree(spans: readonly ReceivedSpan[]): SpanNode[] {
  const nodes = new Map<string, SpanNode>();
  for (const s of spans) nodes.set(s.spanId, { span: s, children: [] });
  const roots: SpanNode[] = [];
  for (const n of nodes.values()) {
    const parent = n.span.parentSpanId === "" ? undefined : nodes.get(n.span.parentSpanId);
    if (parent !== undefined) parent.children.push(n);
    else roots.push(n);
  }
  const order = (a: SpanNode, b: SpanNode) =>
    a.span.start < b.span.start ? -1 : a.span.start > b.span.start ? 1 : 0;
  const sortAll = (list: SpanNode[]) => {
    list.sort(order);
    for (const n of list) sortAll(n.children);
  };
  sortAll(roots);
  return roots;
}

/** Milliseconds between two unix-nanosecond times. */
export function msBetween(from: bigint, to: bigint): number {
  return Number(to - from) / 1e6;
}

/** The trace as indented lines: offset, duration, name, [service], status. */
export function formatTree(spans: readonly ReceivedSpan[]): string {
  if (spans.length === 0) return "(no spans)\n";
  const roots = buildTree(spans);
  let t0 = spans[0].start;
  for (const s of spans) if (s.start < t0) t0 = s.start;
  const lines = [`${"start ms".padStart(9)} ${"dur ms".padStart(9)}  span`];
  const walk = (n: SpanNode, depth: number) => {
    const s = n.span;
    const fail = s.status.code === 2 ? `  ERROR: ${s.status.message ?? ""}` : "";
    lines.push(
      `${msBetween(t0, s.start).toFixed(2).padStart(9)} ${
        msBetween(s.start, s.end).toFixed(2).padStart(9)
      }  ${"  ".repeat(depth)}${s.name} [${s.service}]${fail}`,
    );
    for (const c of n.children) walk(c, depth + 1);
  };
  for (const r of roots) walk(r, 0);
  return lines.join("\n") + "\n";
}
