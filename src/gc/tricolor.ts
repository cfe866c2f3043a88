/**
 * The marking half of a tricolour collector, independent of what the
 * nodes are: everything reachable from the roots is black, the rest white.
 *
 * @module
 */

/** A resource in the graph: its kind, namespace and key. */
export interface Node {
  type: ResourceType;
  namespace: string;
  key: string;
}

/** Kinds of collectable resources. "content-flat"/"snapshot-flat" hold only themselves. */
export type ResourceType =
  | "content"
  | "content-flat"
  | "snapshot"
  | "snapshot-flat"
  | "lease"
  | "ingest";

/** A stable text key for a node, for sets. */
export function nodeId(n: Node): string {
  return `${n.type}\u0000${n.namespace}\u0000${n.key}`;
}

/** Flat variants are marked as their plain resource: reachable is reachable. */
function plain(n: Node): Node {
  if (n.type === "content-flat") return { ...n, type: "content" };
  if (n.type === "snapshot-flat") return { ...n, type: "snapshot" };
  return n;
}

/**
 * Returns the ids ({@link nodeId}, flat types folded into plain ones) of
 * every node reachable from `roots` through `refs`. Grey nodes wait in a
 * stack, so deep chains cannot overflow the call stack.
 */
export function mark(roots: Iterable<Node>, refs: (n: Node) => Iterable<Node>): Set<string> {
  const black = new Set<string>();
  const seen = new Set<string>();
  const grey: Node[] = [];
  for (const r of roots) {
    const id = nodeId(r);
    if (!seen.has(id)) {
      seen.add(id);
      grey.push(r);
    }
  }
  while (grey.length > 0) {
    const n = grey.pop()!;
    black.add(nodeId(plain(n)));
    for (const m of refs(n)) {
      const id = nodeId(m);
      if (!seen.has(id)) {
        seen.add(id);
        grey.push(m);
      }
    }
  }
  return black;
}
