/**
 * Fails (exit 1) when berth's import graph has a cycle: between files, or
 * between folders (a folder's files importing another folder whose files
 * import it back). Tests and their helpers (`*_test.ts`, `testing.ts`,
 * `testutil.ts`), benches and src/gen are left out; static, type-only and
 * dynamic imports all count. `make check` runs it.
 *
 *     deno run --allow-read scripts/check_cycles.ts [ROOT]
 *
 * @module
 */

// Cycles known and owned by someone, each with who removes it. Keys are the
// cycle's members joined by " <-> ", sorted. None today.
const ALLOWED: ReadonlyMap<string, string> = new Map();

const TEST_SUPPORT = /(_test|^testing|^testutil)\.ts$/;
const IMPORT = /(?:^|\n)\s*(?:import|export)\b[^'"`;]*?\bfrom\s*["'](\.[^"']+)["']/g;
const DYNAMIC = /\bimport\(\s*["'](\.[^"']+)["']\s*\)/g;

/** Every file the check covers, relative to `root`. */
export function sourceFiles(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of Deno.readDirSync(`${root}/${dir}`)) {
      const rel = dir === "." ? e.name : `${dir}/${e.name}`;
      if (e.isDirectory) {
        if (rel !== "src/gen") walk(rel);
      } else if (e.name.endsWith(".ts") && !TEST_SUPPORT.test(e.name)) out.push(rel);
    }
  };
  out.push("mod.ts");
  walk("src");
  walk("ffi");
  return out.sort();
}

/** Joins a relative import onto the importing file's folder, all in root-relative terms. */
function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const p of spec.split("/")) {
    if (p === "..") parts.pop();
    else if (p !== ".") parts.push(p);
  }
  return parts.join("/");
}

/** File -> the covered files it imports. */
export function importGraph(root: string, files: string[]): Map<string, Set<string>> {
  const known = new Set(files);
  const graph = new Map<string, Set<string>>();
  for (const f of files) {
    const text = Deno.readTextFileSync(`${root}/${f}`);
    const deps = new Set<string>();
    for (const re of [IMPORT, DYNAMIC]) {
      for (const m of text.matchAll(re)) {
        const target = resolve(f, m[1]);
        if (known.has(target)) deps.add(target);
      }
    }
    graph.set(f, deps);
  }
  return graph;
}

/** The folder a file belongs to, as the layout counts them (src/x, ffi, or the root). */
export function folderOf(file: string): string {
  const parts = file.split("/");
  if (parts[0] === "src" && parts.length > 2) {
    // src/services/<name> are separate services; the rest is one folder each.
    return parts[1] === "services" && parts.length > 3
      ? parts.slice(0, 3).join("/")
      : parts.slice(0, 2).join("/");
  }
  return parts.length > 1 ? parts[0] : ".";
}

/** Strongly connected components with more than one member (Tarjan, iterative). */
export function cycles(graph: Map<string, Set<string>>): string[][] {
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  for (const start of graph.keys()) {
    if (index.has(start)) continue;
    const work: Array<{ v: string; it: Iterator<string> }> = [];
    const enter = (v: string) => {
      index.set(v, counter);
      low.set(v, counter++);
      stack.push(v);
      onStack.add(v);
      work.push({ v, it: (graph.get(v) ?? new Set()).values() });
    };
    enter(start);
    while (work.length > 0) {
      const top = work[work.length - 1];
      const next = top.it.next();
      if (!next.done) {
        const w = next.value;
        if (!index.has(w)) enter(w);
        else if (onStack.has(w)) low.set(top.v, Math.min(low.get(top.v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length > 0) {
        const parent = work[work.length - 1].v;
        low.set(parent, Math.min(low.get(parent)!, low.get(top.v)!));
      }
      if (low.get(top.v) === index.get(top.v)) {
        const comp: string[] = [];
        for (;;) {
          const w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
          if (w === top.v) break;
        }
        if (comp.length > 1) out.push(comp.sort());
      }
    }
  }
  return out;
}

/** Folder -> folders it imports, from a file graph. */
export function folderGraph(graph: Map<string, Set<string>>): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [f, deps] of graph) {
    const from = folderOf(f);
    const set = out.get(from) ?? new Set<string>();
    out.set(from, set);
    for (const d of deps) if (folderOf(d) !== from) set.add(folderOf(d));
  }
  return out;
}

if (import.meta.main) {
  const root = Deno.args[0] ?? ".";
  const graph = importGraph(root, sourceFiles(root));
  const found = [
    ...cycles(graph).map((c) => ({ kind: "files", key: c.join(" <-> ") })),
    ...cycles(folderGraph(graph)).map((c) => ({ kind: "folders", key: c.join(" <-> ") })),
  ];
  let bad = 0;
  for (const { kind, key } of found) {
    const owner = ALLOWED.get(key);
    if (owner !== undefined) {
      console.error(`check_cycles: allowed (${owner}): ${key}`);
      continue;
    }
    console.error(`check_cycles: import cycle among ${kind}: ${key}`);
    bad++;
  }
  if (bad > 0) Deno.exit(1);
  console.error(`check_cycles: no import cycle among ${graph.size} files`);
}
