import assert from "node:assert/strict";
import { Code, isCode } from "../errdefs/mod.ts";
import { adaptFields, parseFilter, parseFilters } from "./mod.ts";
import { unquote } from "./scanner.ts";

interface Item {
  name: string;
  other?: string;
  labels?: Record<string, string>;
}

const items: Item[] = [
  { name: "foo", labels: { foo: "true" } }, // 0
  { name: "bar" }, // 1
  { name: "foo", labels: { foo: "present", "more complex label": "present" } }, // 2
  { name: "bar", labels: { bar: "true" } }, // 3
  { name: "fooer", labels: { 'more complex label with \\ and "': "present" } }, // 4
  { name: "fooer", labels: { 'more complex label with \\ and ".post': "present" } }, // 5
  { name: "baz", other: "too complex, yo" }, // 6
  { name: "bazo", other: "abc" }, // 7
  { name: "compound", labels: { foo: "omg_asdf.asdf-qwer" } }, // 8
  { name: "dotted", labels: { "io.cri/name": "x", empty: "" } }, // 9
];

function select(filters: string[] | string): number[] {
  const f = typeof filters === "string" ? parseFilter(filters) : parseFilters(filters);
  const out: number[] = [];
  items.forEach((it, i) => {
    if (f.match(adaptFields({ name: it.name, other: it.other }, { labels: it.labels }))) {
      out.push(i);
    }
  });
  return out;
}

const all = items.map((_, i) => i);

Deno.test("filters: matching table", () => {
  const cases: [string, number[]][] = [
    ["", all],
    ["name", all],
    ["labels.foo", [0, 2, 8]],
    ["labels.foo,name", [0, 2, 8]],
    ["labels.foo==true", [0]],
    ["labels.foo==omg_asdf.asdf-qwer", [8]],
    ["name==bar", [1, 3]],
    ["name!=bar", [0, 2, 4, 5, 6, 7, 8, 9]],
    ["name==bar,labels.bar", [3]],
    ['other=="too complex, yo"', [6]],
    ["other~=[abc]+,name!=foo", [6, 7]],
    ["other~=/[abc]+/,name!=foo", [6, 7]],
    ["other~=/[abc]{1,2}/,name!=foo", [6, 7]],
    ["other~=|[abc]{1,2}|,name!=foo", [6, 7]],
    ['other~=/[abc]{0,1}"\\//,name!=foo', []],
    ["name==bar,labels.bar==true", [3]],
    ["name==bar,labels.bar==wrong", []],
    ['name==foo,labels."more complex label"', [2]],
    ['labels."more complex label with \\\\ and \\""==present', [4]],
    ['labels."more complex label with \\\\ and \\"".post==present', [5]],
    ['labels."io.cri/name"==x', [9]],
    // Unquoted dotted paths join into one label key.
    ["labels.io", []],
    ["labels.empty", [9]], // present with an empty value
    ["labels.empty==", []], // `==` needs a value
    ["name~=^ba", [1, 3, 6, 7]],
    ["name~=(?i)^BA.$", [1, 3, 6]],
    ["name == bar", [1, 3]],
    ["other!=abc", [0, 1, 2, 3, 4, 5, 6, 8, 9]], // absent compares as ""
    ["missing", []],
  ];
  for (const [input, want] of cases) {
    if (input === "labels.empty==") {
      assert.throws(() => select(input), (e) => isCode(e, Code.InvalidArgument));
      continue;
    }
    assert.deepEqual(select(input), want, input);
  }
});

Deno.test("filters: several filters are alternatives", () => {
  assert.deepEqual(select(["name==bar", "labels.foo==true"]), [0, 1, 3]);
  assert.deepEqual(select([]), all);
  assert.deepEqual(select(["name==nothing"]), []);
});

Deno.test("filters: parse errors say where and are InvalidArgument", () => {
  const cases: [string, string][] = [
    [
      "labels.|foo|==omg_asdf.asdf-qwer",
      "filters: parse error: [labels. >|||< foo|==omg_asdf.asdf-qwer]: invalid quote encountered",
    ],
    [
      'labels.?"more complex label with \\\\ and \\"".post==present',
      'filters: parse error: [labels. >|?|< "more complex label with \\\\ and \\"".post==present]: expected field or quoted',
    ],
    ["name==foo,", "filters: parse error: [name==foo,]: expected field or quoted"],
    ["labels.", "filters: parse error: [labels.]: expected field or quoted"],
    [
      "image~=,id?=?fbaq",
      "filters: parse error: [image~= >|,|< id?=?fbaq]: expected value or quoted",
    ],
    [
      "labels.ns/key==value",
      "filters: parse error: [labels.ns >|/|< key==value]: quoted literal not terminated",
    ],
    [
      "labels.key==/value",
      "filters: parse error: [labels.key== >|/|< value]: quoted literal not terminated",
    ],
    ["name===x", 'filters: parse error: [name >|=|< ==x]: unsupported operator "==="'],
    ["name==", "filters: parse error: [name==]: expected value or quoted"],
    ["name==a b", 'filters: parse error: [name==a >| |< b]: unexpected input: " "'],
    ['name=="a\\qb"', 'filters: parse error: [name== >|"|< a\\qb"]: illegal escape sequence'],
    ["name,", "filters: parse error: [name,]: expected field or quoted"],
    ["name==x;y", ""],
  ];
  for (const [input, message] of cases) {
    if (!message) {
      parseFilter(input); // bare values take any printable character
      continue;
    }
    assert.throws(() => parseFilter(input), (e) => {
      assert.ok(isCode(e, Code.InvalidArgument), `${input}: ${e}`);
      assert.equal((e as Error).message, message, input);
      return true;
    });
  }
});

Deno.test("filters: invalid regular expressions are rejected at parse time", () => {
  assert.throws(() => parseFilter("name~=/[a/"), (e) => isCode(e, Code.InvalidArgument));
  assert.throws(() => parseFilters(["name==a", "name~=("]), (e) => isCode(e, Code.InvalidArgument));
});

Deno.test("filters: unquote handles Go escapes and alternative quotes", () => {
  assert.equal(unquote('"a\\tb"'), "a\tb");
  assert.equal(unquote('"\\x41\\u00e9\\U0001F600\\101"'), "Aé😀A");
  assert.equal(unquote("/a\\/b/"), "a/b");
  assert.equal(unquote("|a\\|b|"), "a|b");
  assert.equal(unquote('"a\\/b"'), undefined); // escaped quote must be the one in use
  assert.equal(unquote('"a'), undefined);
  assert.equal(unquote('"\\777"'), undefined);
  assert.equal(unquote("'ab'"), undefined);
  assert.equal(unquote("'a'"), "a");
});

Deno.test("filters: adaptFields reads nested dotted fields and maps", () => {
  const a = adaptFields(
    { name: "img", "target.digest": "sha256:ab", "target.size": 12, empty: "" },
    { labels: { "a.b": "c" }, annotations: undefined },
  );
  assert.equal(a(["target", "digest"]), "sha256:ab");
  assert.equal(a(["target", "size"]), "12");
  assert.equal(a(["labels", "a", "b"]), "c");
  assert.equal(a(["labels", "a.b"]), "c");
  assert.equal(a(["annotations", "x"]), undefined);
  assert.equal(a(["empty"]), undefined);
  assert.equal(a(["labels"]), undefined);
  assert.ok(parseFilter("target.digest~=^sha256:").match(a));
});
