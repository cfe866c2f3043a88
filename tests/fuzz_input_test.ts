/**
 * Seeded fuzzers for the parsers of untrusted text and bytes that run in
 * the daemon's process: the TOML config loader, filters, image references
 * and layer tars (src/archive). Every case must end in a value or a
 * BerthError (the daemon maps that to a gRPC code); any other exception
 * (TypeError, RangeError, ...) is a bug, and so is a case that hangs. Layer
 * cases also prove that nothing is written beside the root they apply to.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { applyLayer, packTar, type TarOut } from "../src/archive/mod.ts";
import { configToToml, defaultConfig, parseConfig } from "../src/config/mod.ts";
import { BerthError, Code } from "../src/errdefs/mod.ts";
import { adaptFields, parseFilters } from "../src/filters/mod.ts";
import { parseReference } from "../src/images/mod.ts";
import {
  bounded,
  fuzzCases,
  fuzzSeed,
  fuzzSummary,
  listTree,
  mutate,
  Rng,
} from "./support/fuzz.ts";

const te = new TextEncoder();
const td = new TextDecoder();

/** Runs `fn` on `input`; returns "ok" or "error", and throws on anything not a BerthError. */
function verdict(what: string, seed: number, i: number, input: unknown, fn: () => unknown): string {
  try {
    fn();
    return "ok";
  } catch (err) {
    if (err instanceof BerthError) return "error";
    throw new Error(
      `${what} case ${i} (seed ${seed}) threw ${err instanceof Error ? err.name : typeof err}` +
        ` instead of a BerthError: ${err instanceof Error ? err.message : err}\ninput: ${
          JSON.stringify(input)
        }`,
    );
  }
}

function tally(counts: Record<string, number>, v: string): void {
  counts[v] = (counts[v] ?? 0) + 1;
}

const CONFIG_PIECES = [
  'version = 2\n[grpc]\naddress = "/run/x.sock"\n',
  "[debug]\nlevel = 3\n",
  '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\nruntime_type = "io.containerd.runc.v2"\n',
  '[timeouts]\n"io.containerd.timeout.shim.shutdown" = "3x"\n',
  "oom_score = -999999999999999999999\n",
  "root = []\n",
  "[[grpc]]\n",
  "state = '''\n\n'''\n",
  '[plugins."io.containerd.gc.v1.scheduler"]\npause_threshold = 1e400\n',
  'required_plugins = ["x", 1]\n',
  "disabled_plugins = { a = 1 }\n",
  '[proxy_plugins.p]\ntype = "snapshot"\naddress = 7\n',
  "[stream_processors.x]\naccepts = [[]]\n",
];

Deno.test("fuzz: the TOML config loader answers a config or InvalidArgument, never anything else", () => {
  const seed = fuzzSeed("config");
  const rng = new Rng(seed);
  const n = fuzzCases(3000);
  const base = te.encode(configToToml(defaultConfig()));
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    let text: string;
    switch (rng.int(3)) {
      case 0:
        text = td.decode(mutate(rng, base));
        break;
      case 1:
        text = Array.from({ length: 1 + rng.int(4) }, () => rng.pick(CONFIG_PIECES)).join("");
        break;
      default:
        text = td.decode(mutate(rng, te.encode(rng.pick(CONFIG_PIECES))));
    }
    tally(counts, verdict("config", seed, i, text, () => parseConfig(text, "fuzz.toml")));
  }
  fuzzSummary("config", seed, n, `no crash (${JSON.stringify(counts)})`);
});

const FILTER_SEEDS = [
  'name=="foo",labels.a~="^b.*$"',
  "topic~=/tasks/",
  'labels."x.y"!=z',
  "target.digest==sha256:abc",
  "name",
  '"a"=="\\x41\\u00e9\\\'"',
  "labels.`k`~=`(a|b)+`",
  "a.b.c==d,e!=f,g",
];

Deno.test("fuzz: filters parse or fail with InvalidArgument, and matching never throws", () => {
  const seed = fuzzSeed("filters");
  const rng = new Rng(seed);
  const n = fuzzCases(5000);
  const counts: Record<string, number> = {};
  const adaptor = adaptFields(
    { name: "foo", topic: "/tasks/exit", "target.digest": "sha256:abc" },
    { labels: { a: "bcd", "x.y": "z", k: "ab" } },
  );
  for (let i = 0; i < n; i++) {
    const filters = Array.from(
      { length: 1 + rng.int(3) },
      () =>
        rng.chance(0.7)
          ? td.decode(mutate(rng, te.encode(rng.pick(FILTER_SEEDS))))
          : rng.string(40, "abc.,=\"~!`'\\/ xyz^$()[]*+?{}|"),
    );
    tally(
      counts,
      verdict("filters", seed, i, filters, () => parseFilters(filters).match(adaptor)),
    );
  }
  fuzzSummary("filters", seed, n, `no crash (${JSON.stringify(counts)})`);
});

const REF_SEEDS = [
  "docker.io/library/busybox:latest",
  "localhost:5000/a/b-c__d.e:v1.2",
  "busybox@sha256:" + "a".repeat(64),
  "example.com/x/y:t@sha256:" + "0".repeat(64),
  "ubuntu",
];

Deno.test("fuzz: image references parse or fail with InvalidArgument", () => {
  const seed = fuzzSeed("references");
  const rng = new Rng(seed);
  const n = fuzzCases(5000);
  const counts: Record<string, number> = {};
  for (let i = 0; i < n; i++) {
    const ref = rng.chance(0.8)
      ? td.decode(mutate(rng, te.encode(rng.pick(REF_SEEDS))))
      : rng.string(80, "abcdef0123456789:/@.-_ABC");
    tally(counts, verdict("reference", seed, i, ref, () => parseReference(ref)));
  }
  fuzzSummary("references", seed, n, `no crash (${JSON.stringify(counts)})`);
});

/** A small valid layer: directories, files, links, a whiteout, pax records. */
async function seedLayer(rng: Rng): Promise<Uint8Array> {
  const T = new Date("2021-01-01T00:00:00Z");
  const entries: TarOut[] = [];
  const names = ["a", "a/b", "c"];
  for (const d of names) {
    entries.push({
      header: { name: d, type: "directory", mode: 0o755, uid: 0, gid: 0, size: 0, mtime: T },
    });
  }
  for (let k = 0; k < 1 + rng.int(4); k++) {
    const body = rng.bytes(rng.int(1200));
    entries.push({
      header: {
        name: k === 0 ? "a/f0" : `${rng.pick(names)}/f${k}`,
        type: "file",
        mode: 0o644,
        uid: 1000,
        gid: 1000,
        size: body.length,
        mtime: T,
        pax: rng.chance(0.3) ? { "SCHILY.xattr.user.k": "v" } : undefined,
      },
      data: (async function* () {
        yield body;
      })(),
    });
  }
  entries.push({
    header: {
      name: "a/l",
      type: "symlink",
      linkname: "../c",
      mode: 0o777,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: T,
    },
  });
  entries.push({
    header: {
      name: "c/h",
      type: "link",
      linkname: "a/f0",
      mode: 0o644,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: T,
    },
  });
  entries.push({
    header: { name: "a/.wh.gone", type: "file", mode: 0o644, uid: 0, gid: 0, size: 0, mtime: T },
  });
  async function* gen() {
    yield* entries;
  }
  return new Uint8Array(await new Response(packTar(gen())).arrayBuffer());
}

const TYPES = [
  "file",
  "directory",
  "symlink",
  "link",
  "fifo",
  "character-device",
  "block-device",
  "contiguous-file",
] as const;

/**
 * A layer made of hostile parts: names and link targets from `..`, `/`,
 * whiteout prefixes and the path of a canary beside the root; any type.
 */
function hostileLayer(rng: Rng, canary: string): Promise<Uint8Array> {
  const pieces = ["..", ".", "a", "b", "", ".wh.a", ".wh...", ".wh..wh..opq", "l", canary.slice(1)];
  const path = () => {
    const parts = Array.from({ length: 1 + rng.int(4) }, () => rng.pick(pieces));
    return (rng.chance(0.2) ? "/" : "") + parts.join("/");
  };
  const entries: TarOut[] = [];
  for (let k = 0; k < 1 + rng.int(8); k++) {
    const type = rng.pick(TYPES);
    const body = type === "file" ? rng.bytes(rng.int(64)) : new Uint8Array(0);
    entries.push({
      header: {
        name: path(),
        type,
        linkname: rng.chance(0.3) ? canary : path(),
        mode: rng.int(0o10000),
        uid: rng.int(3),
        gid: rng.int(3),
        size: body.length,
        mtime: new Date(rng.int(2 ** 31) * 1000),
        devmajor: rng.int(3),
        devminor: rng.int(3),
      },
      data: (async function* () {
        yield body;
      })(),
    });
  }
  async function* gen() {
    yield* entries;
  }
  return new Response(packTar(gen())).arrayBuffer().then((b) => new Uint8Array(b));
}

Deno.test("fuzz: layer tars apply or fail with a BerthError, and never write outside the root", async () => {
  const seed = fuzzSeed("layers");
  const rng = new Rng(seed);
  const n = fuzzCases(500, 20_000);
  const tmp = await Deno.makeTempDir({ prefix: "berth-fuzz-layer-" });
  const canary = `${tmp}/canary`;
  const counts: Record<string, number> = {};
  const samples: Record<string, string> = {};
  try {
    await Deno.mkdir(canary);
    await Deno.writeTextFile(`${canary}/keep`, "keep");
    const canaryBefore = listTree(tmp);
    const seeds = await Promise.all(Array.from({ length: 8 }, () => seedLayer(rng)));
    for (let i = 0; i < n; i++) {
      let bytes = rng.chance(0.5)
        ? await hostileLayer(rng, canary)
        : mutate(rng, rng.pick(seeds), 1 << 20);
      if (rng.chance(0.2)) bytes = gzipSync(bytes);
      else if (rng.chance(0.05)) bytes = mutate(rng, gzipSync(rng.pick(seeds)));
      const root = `${tmp}/root`;
      await Deno.mkdir(root);
      let v: string;
      try {
        await bounded(
          `layer case ${i} (seed ${seed})`,
          10_000,
          applyLayer(root, new Blob([bytes as Uint8Array<ArrayBuffer>]).stream(), {
            whiteouts: rng.chance(0.5) ? "overlay" : "delete",
          }),
        );
        v = "ok";
      } catch (err) {
        if (!(err instanceof BerthError)) {
          throw new Error(
            `layer case ${i} (seed ${seed}) threw ${(err as Error)?.name}, not a BerthError: ${
              (err as Error)?.message
            }`,
          );
        }
        v = `error ${Code[err.code]}`;
        samples[v] ??= err.message;
      }
      tally(counts, v);
      await Deno.remove(root, { recursive: true });
      assert.deepEqual(listTree(tmp), canaryBefore, `layer case ${i} (seed ${seed}) wrote outside`);
      assert.equal(await Deno.readTextFile(`${canary}/keep`), "keep");
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
  fuzzSummary("layers", seed, n, `no crash, nothing outside the root (${JSON.stringify(counts)})`);
  console.log(`fuzz layers: a message of each error: ${JSON.stringify(samples)}`);
});
