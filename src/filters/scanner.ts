/**
 * The tokenizer of the filter language. Positions are UTF-16 indices into
 * the input, which is what error messages point at.
 *
 * @module
 */

/** Token kinds; any other single character comes back as {@link Tok.Char}. */
export enum Tok {
  EOF,
  Quoted,
  Value,
  Field,
  Separator,
  Operator,
  Illegal,
  Char,
}

/** One token: where it starts, its kind and its exact text. */
export interface Token {
  pos: number;
  tok: Tok;
  text: string;
}

const FIELD_RE = /^[A-Za-z0-9_]$/;
// Anything printable except `,` and white space may appear in a bare value.
const VALUE_RE = /^[\p{L}\p{N}\p{P}\p{S}\p{M}]$/u;
const SPACE_RE = /^\s$/u;

function isQuote(ch: string): boolean {
  return ch === "/" || ch === "|" || ch === '"';
}
function isSeparator(ch: string): boolean {
  return ch === "," || ch === ".";
}
function isOperatorChar(ch: string): boolean {
  return ch === "=" || ch === "!" || ch === "~";
}
function isValueChar(ch: string): boolean {
  return ch !== "," && !SPACE_RE.test(ch) && VALUE_RE.test(ch);
}
function digitValue(ch: string): number {
  if (ch >= "0" && ch <= "9") return ch.charCodeAt(0) - 48;
  if (ch >= "a" && ch <= "f") return ch.charCodeAt(0) - 87;
  if (ch >= "A" && ch <= "F") return ch.charCodeAt(0) - 55;
  return 16;
}

/** The sentinel "character" returned at the end of input. */
export const EOF_CH = "";

/**
 * Splits filter text into tokens. Whether a bare word is a field or a value
 * depends on whether an operator came just before it, as in containerd.
 */
export class Scanner {
  /** Start of the character last read. */
  pos = 0;
  /** Index just past the character last read. */
  ppos = 0;
  /** The first error met while scanning, for the parser's message. */
  err = "";
  private expectValue = false;

  constructor(readonly input: string) {}

  /** Reads one code point; "" at the end. NUL is illegal (reported as "\0"). */
  next(): string {
    if (this.ppos >= this.input.length) {
      this.pos = this.input.length;
      return EOF_CH;
    }
    this.pos = this.ppos;
    const cp = this.input.codePointAt(this.ppos)!;
    const ch = String.fromCodePoint(cp);
    this.ppos += ch.length;
    if (cp === 0) this.error("unexpected null");
    return ch;
  }

  /** The next code point without consuming it. */
  peek(): string {
    const pos = this.pos, ppos = this.ppos;
    const ch = this.next();
    this.pos = pos;
    this.ppos = ppos;
    return ch;
  }

  /** Reads the next token, skipping white space before it. */
  scan(): Token {
    let ch = this.next();
    while (ch !== EOF_CH && SPACE_RE.test(ch)) ch = this.next();
    const pos = this.pos;
    if (ch === EOF_CH) return { pos, tok: Tok.EOF, text: "" };
    if (ch === "\0") return { pos, tok: Tok.Illegal, text: ch };
    if (isQuote(ch)) {
      const ok = this.scanQuoted(ch);
      return { pos, tok: ok ? Tok.Quoted : Tok.Illegal, text: this.input.slice(pos, this.ppos) };
    }
    if (isSeparator(ch)) {
      this.expectValue = false;
      return { pos, tok: Tok.Separator, text: ch };
    }
    if (isOperatorChar(ch)) {
      while (isOperatorChar(this.peek())) this.next();
      this.expectValue = true;
      return { pos, tok: Tok.Operator, text: this.input.slice(pos, this.ppos) };
    }
    if (this.expectValue) {
      while (this.peek() !== EOF_CH && isValueChar(this.peek())) this.next();
      this.expectValue = false;
      return { pos, tok: Tok.Value, text: this.input.slice(pos, this.ppos) };
    }
    if (FIELD_RE.test(ch)) {
      while (FIELD_RE.test(this.peek())) this.next();
      return { pos, tok: Tok.Field, text: this.input.slice(pos, this.ppos) };
    }
    return { pos, tok: Tok.Char, text: ch };
  }

  private scanQuoted(quote: string): boolean {
    let illegal = false;
    let ch = this.next();
    while (ch !== quote) {
      if (ch === "\n" || ch === EOF_CH) {
        this.error("quoted literal not terminated");
        return false;
      }
      if (ch === "\\") {
        const r = this.scanEscape(quote);
        ch = r.ch;
        if (!r.legal) illegal = true;
      } else {
        ch = this.next();
      }
    }
    return !illegal;
  }

  private scanEscape(quote: string): { ch: string; legal: boolean } {
    const ch = this.next();
    if ("abfnrtv\\".includes(ch) && ch !== "" || ch === quote) {
      return { ch: this.next(), legal: true };
    }
    if (ch >= "0" && ch <= "7" && ch.length === 1) return this.scanDigits(ch, 8, 3);
    if (ch === "x") return this.scanDigits(this.next(), 16, 2);
    if (ch === "u") return this.scanDigits(this.next(), 16, 4);
    if (ch === "U") return this.scanDigits(this.next(), 16, 8);
    this.error("illegal escape sequence");
    return { ch, legal: false };
  }

  private scanDigits(first: string, base: number, n: number): { ch: string; legal: boolean } {
    let ch = first;
    while (n > 0 && ch !== EOF_CH && digitValue(ch) < base) {
      ch = this.next();
      n--;
    }
    if (n > 0) {
      this.error("illegal numeric escape sequence");
      return { ch, legal: false };
    }
    return { ch, legal: true };
  }

  private error(msg: string): void {
    if (!this.err) this.err = msg;
  }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
  "\\": "\\",
};

/**
 * Decodes a quoted literal (including its quotes). `"`, `'`, `/` and `|`
 * quote like Go's double quotes; the escaped quote must be the one in use.
 * Returns undefined on bad syntax.
 */
export function unquote(s: string): string | undefined {
  if (s.length < 2) return undefined;
  const quote = s[0];
  if (quote !== s[s.length - 1] || !`"'/|`.includes(quote)) return undefined;
  const body = s.slice(1, -1);
  if (body.includes("\n")) return undefined;
  let out = "";
  let i = 0;
  while (i < body.length) {
    const c = body[i];
    if (c === quote) return undefined;
    if (c !== "\\") {
      const cp = body.codePointAt(i)!;
      out += String.fromCodePoint(cp);
      i += cp > 0xffff ? 2 : 1;
      if (quote === "'" && i < body.length) return undefined;
      continue;
    }
    const e = body[i + 1];
    if (e === undefined) return undefined;
    i += 2;
    const simple = SIMPLE_ESCAPES;
    if (Object.hasOwn(simple, e)) {
      out += simple[e];
    } else if (e === "x" || e === "u" || e === "U") {
      const n = e === "x" ? 2 : e === "u" ? 4 : 8;
      const hex = body.slice(i, i + n);
      if (hex.length < n || !/^[0-9a-fA-F]+$/.test(hex)) return undefined;
      const v = parseInt(hex, 16);
      if (v > 0x10ffff) return undefined;
      out += String.fromCodePoint(v);
      i += n;
    } else if (e >= "0" && e <= "7") {
      const oct = e + body.slice(i, i + 2);
      if (!/^[0-7]{3}$/.test(oct)) return undefined;
      const v = parseInt(oct, 8);
      if (v > 255) return undefined;
      out += String.fromCharCode(v);
      i += 2;
    } else if (`'"|/`.includes(e)) {
      if (e !== quote) return undefined;
      out += e;
    } else {
      return undefined;
    }
    if (quote === "'" && i < body.length) return undefined;
  }
  return out;
}
