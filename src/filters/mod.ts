/**
 * containerd's filter language, the one way every berth List call filters.
 *
 * A filter is selectors joined by `,` (all must match):
 * `<fieldpath>[<op><value>]`, where a field path is fields joined by `.`,
 * each a bare word `[A-Za-z0-9_]+` or a double-quoted string
 * (`labels."io.cri/name"`), the operator is `==`, `!=` or `~=` (regular
 * expression), and a value is a bare run of printable characters up to `,`
 * or white space, or a quoted string. A selector without operator tests
 * that the field is present. Values of `~=` may also be quoted with `/.../`
 * or `|...|`, so a regular expression can hold `"` or `,`.
 *
 * Several filter strings given to one List are alternatives (any may
 * match): that is {@link parseFilters}. No filter at all matches everything.
 *
 * Objects are matched through an {@link Adaptor} that maps a field path to
 * the field's value; {@link adaptFields} builds the usual one.
 *
 * @example
 * ```ts
 * import { adaptFields, parseFilters } from "./mod.ts";
 * const f = parseFilters(['name~=^redis,labels."app.tier"==db', "name==nginx"]);
 * f.match(adaptFields({ name: "redis:7" }, { labels: { "app.tier": "db" } })); // true
 * ```
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";
import { Scanner, Tok, type Token, unquote } from "./scanner.ts";

/**
 * Looks up a field path on one object: the value as text, or undefined
 * when the field is absent (absent and empty are both "not present").
 */
export type Adaptor = (fieldpath: readonly string[]) => string | undefined;

/** A parsed filter. */
export interface Filter {
  /** True when the object seen through `adaptor` passes the filter. */
  match(adaptor: Adaptor): boolean;
}

/** The comparison a selector makes. */
export type Operator = "present" | "==" | "!=" | "~=";

/** One `<fieldpath>[<op><value>]` term, as parsed. */
export interface Selector {
  fieldpath: string[];
  operator: Operator;
  value: string;
}

/** A filter that matches everything (the empty filter). */
export const ALWAYS: Filter = { match: () => true };

class SelectorFilter implements Filter {
  constructor(readonly selector: Selector, private readonly re?: RegExp) {}
  match(adaptor: Adaptor): boolean {
    const value = adaptor(this.selector.fieldpath);
    switch (this.selector.operator) {
      case "present":
        return value !== undefined;
      case "==":
        return value !== undefined && value === this.selector.value;
      case "!=":
        // An absent field counts as "", as in containerd: `name!=x` keeps unnamed objects.
        return (value ?? "") !== this.selector.value;
      case "~=":
        return this.re!.test(value ?? "");
    }
  }
}

class AllOf implements Filter {
  constructor(readonly parts: Filter[]) {}
  match(adaptor: Adaptor): boolean {
    return this.parts.every((p) => p.match(adaptor));
  }
}

class AnyOf implements Filter {
  constructor(readonly parts: Filter[]) {}
  match(adaptor: Adaptor): boolean {
    return this.parts.some((p) => p.match(adaptor));
  }
}

/**
 * Go's RE2 and JavaScript agree on the common syntax; RE2's leading inline
 * flags `(?i)`, `(?s)`, `(?m)` become JavaScript flags.
 */
function compileRegExp(pattern: string, input: string): RegExp {
  let flags = "";
  let body = pattern;
  const m = /^\(\?([ims]+)\)/.exec(body);
  if (m) {
    flags = [...new Set(m[1])].join("");
    body = body.slice(m[0].length);
  }
  try {
    return new RegExp(body, flags);
  } catch (err) {
    throw invalidArgument(
      `filters: parse error: [${input}]: invalid regular expression ${JSON.stringify(pattern)}: ${
        (err as Error).message
      }`,
    );
  }
}

class Parser {
  private readonly scanner: Scanner;
  constructor(private readonly input: string) {
    this.scanner = new Scanner(input);
  }

  parse(): Filter {
    const parts: Filter[] = [this.selector()];
    for (;;) {
      const ch = this.scanner.peek();
      if (ch === "") break;
      if (ch !== ",") {
        throw this.error(this.scanner.ppos, `unexpected input: ${JSON.stringify(ch)}`);
      }
      this.scanner.scan();
      parts.push(this.selector());
    }
    return new AllOf(parts);
  }

  private selector(): Filter {
    const fieldpath = this.fieldpath();
    const ch = this.scanner.peek();
    if (ch === "," || ch === "." || ch === "") {
      return new SelectorFilter({ fieldpath, operator: "present", value: "" });
    }
    const operator = this.operator();
    const value = this.value(operator === "~=");
    const selector = { fieldpath, operator, value };
    return new SelectorFilter(
      selector,
      operator === "~=" ? compileRegExp(value, this.input) : undefined,
    );
  }

  private fieldpath(): string[] {
    const path = [this.field()];
    while (this.scanner.peek() === ".") {
      this.scanner.scan();
      path.push(this.field());
    }
    return path;
  }

  private field(): string {
    const t = this.scanner.scan();
    switch (t.tok) {
      case Tok.Field:
        return t.text;
      case Tok.Quoted:
        return this.unquote(t, false);
      case Tok.Illegal:
        throw this.error(t.pos, this.scanner.err);
    }
    throw this.error(t.pos, "expected field or quoted");
  }

  private operator(): Operator {
    const t = this.scanner.scan();
    if (t.tok === Tok.Operator) {
      if (t.text === "==" || t.text === "!=" || t.text === "~=") return t.text;
      throw this.error(t.pos, `unsupported operator ${JSON.stringify(t.text)}`);
    }
    if (t.tok === Tok.Illegal) throw this.error(t.pos, this.scanner.err);
    throw this.error(t.pos, 'expected an operator ("=="|"!="|"~=")');
  }

  private value(allowAltQuotes: boolean): string {
    const t = this.scanner.scan();
    switch (t.tok) {
      case Tok.Value:
      case Tok.Field:
        return t.text;
      case Tok.Quoted:
        return this.unquote(t, allowAltQuotes);
      case Tok.Illegal:
        throw this.error(t.pos, this.scanner.err);
    }
    throw this.error(t.pos, "expected value or quoted");
  }

  private unquote(t: Token, allowAltQuotes: boolean): string {
    if (!allowAltQuotes && t.text[0] !== '"' && t.text[0] !== "'") {
      throw this.error(t.pos, "invalid quote encountered");
    }
    const s = unquote(t.text);
    if (s === undefined) throw this.error(t.pos, "unquoting failed: invalid syntax");
    return s;
  }

  // The message points at the offending character the way containerd's does:
  // "[before >|x|< after]: what was wrong".
  private error(pos: number, msg: string) {
    const i = this.input;
    const where = pos < i.length
      ? `[${i.slice(0, pos)} >|${i.slice(pos, pos + 1)}|< ${i.slice(pos + 1)}]`
      : `[${i}]`;
    return invalidArgument(`filters: parse error: ${where}: ${msg}`);
  }
}

/**
 * Parses one filter string (selectors joined by `,`, all must match).
 * The empty string matches everything. Throws InvalidArgument on bad syntax
 * or a bad regular expression.
 */
export function parseFilter(filter: string): Filter {
  if (filter === "") return ALWAYS;
  return new Parser(filter).parse();
}

/**
 * Parses the filters of one List request: the object passes when ANY of
 * them matches; no filters match everything.
 */
export function parseFilters(filters: readonly string[] | undefined): Filter {
  if (!filters || filters.length === 0) return ALWAYS;
  const parsed = filters.map(parseFilter);
  return parsed.length === 1 ? parsed[0] : new AnyOf(parsed);
}

/** A value {@link adaptFields} can expose: text, numbers and booleans print as text. */
export type FieldValue = string | number | bigint | boolean | undefined | null;

/**
 * The usual adaptor: `fields` maps a dotted field path ("name",
 * "target.digest") to its value; `maps` holds map-valued fields such as
 * "labels" or "annotations", where the rest of the path, joined by `.`, is
 * the key (so `labels.a.b` and `labels."a.b"` both find key "a.b").
 * Empty strings count as absent, as in containerd's adaptors.
 */
export function adaptFields(
  fields: Record<string, FieldValue>,
  maps: Record<string, Record<string, string> | undefined> = {},
): Adaptor {
  return (path) => {
    if (path.length === 0) return undefined;
    if (path.length > 1 && Object.hasOwn(maps, path[0])) {
      const map = maps[path[0]];
      const key = path.slice(1).join(".");
      if (!map || !Object.hasOwn(map, key)) return undefined;
      return map[key];
    }
    const key = path.join(".");
    if (!Object.hasOwn(fields, key)) return undefined;
    const v = fields[key];
    if (v === undefined || v === null || v === "") return undefined;
    return String(v);
  };
}
