/**
 * Proves that berth's .proto files (proto/, generated into src/gen/) describe
 * the same wire protocol as containerd 1.6.
 *
 * The reference is not a copy of containerd's .proto text but what containerd
 * actually compiled: every gogo-generated .pb.go file embeds its schema as a
 * gzipped google.protobuf.FileDescriptorProto (`var fileDescriptor_<hash> =
 * []byte{...}`). This test pulls those bytes out of the Go sources installed on
 * the machine, decodes them, and compares every message, enum and service they
 * define against the descriptors embedded in our generated code.
 */
import { fromBinary, isFieldSet } from "@bufbuild/protobuf";
import type { DescFile, Registry } from "@bufbuild/protobuf";
import { createRegistry } from "@bufbuild/protobuf";
import {
  type DescriptorProto,
  type EnumDescriptorProto,
  type FieldDescriptorProto,
  FieldDescriptorProto_Label,
  FieldDescriptorProto_Type,
  FieldDescriptorProtoSchema,
  type FileDescriptorProto,
  FileDescriptorProtoSchema,
  type ServiceDescriptorProto,
} from "@bufbuild/protobuf/wkt";
import { gunzipSync } from "node:zlib";
import { fileURLToPath } from "node:url";
import { join } from "node:path";

/**
 * Debian's golang-*-dev packages put the Go sources here (scripts/setup.sh
 * installs them); BERTH_CONTAINERD_GO_SRC points elsewhere, e.g. at a checkout.
 */
const GO_ROOT = Deno.env.get("BERTH_CONTAINERD_GO_SRC") ??
  "/usr/share/gocode/src/github.com/containerd";
const CONTAINERD = `${GO_ROOT}/containerd`;
const GEN_DIR = fileURLToPath(new URL("../src/gen", import.meta.url));

/**
 * The compiled schemas we mirror. containerd's whole api/ tree is walked (so a
 * new API file there shows up as "missing from berth"); the rest are listed.
 */
const EXTRA_PB_GO = [
  `${CONTAINERD}/runtime/v2/task/shim.pb.go`,
  `${CONTAINERD}/runtime/v2/runc/options/oci.pb.go`,
  `${GO_ROOT}/cgroups/stats/v1/metrics.pb.go`,
  `${GO_ROOT}/cgroups/v2/stats/metrics.pb.go`,
];

/**
 * containerd types we deliberately do not define, with the reason. Empty:
 * everything in the mirrored files is present.
 */
const MISSING_ALLOWED: Record<string, string> = {};

/**
 * Types berth defines in containerd's packages that containerd 1.6 does not,
 * with the reason. Anything else extra is treated as a misspelled name.
 */
const EXTRA_ALLOWED: Record<string, string> = {
  "containerd.task.v3.Task":
    "shim API name used by containerd 2.x; checked below to equal 1.6's containerd.task.v2.Task",
};

const haveGoSources = (() => {
  try {
    return Deno.statSync(`${CONTAINERD}/api`).isDirectory;
  } catch {
    return false;
  }
})();
if (!haveGoSources) {
  console.warn(
    `proto_compat_test: SKIPPED the schema comparison: containerd's Go sources are not at ` +
      `${CONTAINERD} ` +
      "(install golang-github-containerd-containerd-dev and golang-github-containerd-cgroups-dev, " +
      "or run scripts/setup.sh)",
  );
}

/** Every *.pb.go file under dir, sorted so failures come out in a stable order. */
function findPbGo(dir: string): string[] {
  const found: string[] = [];
  for (const entry of Deno.readDirSync(dir)) {
    const path = join(dir, entry.name);
    if (entry.isDirectory) found.push(...findPbGo(path));
    else if (entry.isFile && entry.name.endsWith(".pb.go")) found.push(path);
  }
  return found.sort();
}

/**
 * Pulls the one gzipped FileDescriptorProto out of a gogo .pb.go file. The
 * generator writes a "// N bytes of a gzipped FileDescriptorProto" comment above
 * the bytes; checking N guards against a silently truncated parse.
 */
function extractFileDescriptor(goSource: string, path: string): FileDescriptorProto {
  const blocks = [...goSource.matchAll(/var fileDescriptor_[0-9a-f]+ = \[\]byte\{([^}]*)\}/g)];
  if (blocks.length !== 1) {
    throw new Error(`${path}: expected one fileDescriptor_ byte array, found ${blocks.length}`);
  }
  const body = blocks[0][1];
  const bytes = Uint8Array.from(
    [...body.matchAll(/0x([0-9a-fA-F]{2})/g)].map((m) => parseInt(m[1], 16)),
  );
  const declared = /\/\/ (\d+) bytes of a gzipped FileDescriptorProto/.exec(body);
  if (!declared || Number(declared[1]) !== bytes.length) {
    throw new Error(
      `${path}: parsed ${bytes.length} descriptor bytes, the file says ${declared?.[1]}`,
    );
  }
  return fromBinary(FileDescriptorProtoSchema, gunzipSync(bytes));
}

/** Loads every generated module under src/gen and returns its file descriptors. */
async function loadOurFiles(): Promise<DescFile[]> {
  const files: DescFile[] = [];
  const walk = async (dir: string) => {
    for (const entry of [...Deno.readDirSync(dir)].sort((a, b) => a.name < b.name ? -1 : 1)) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith("_pb.ts")) {
        const mod = await import(new URL(`file://${path}`).href);
        for (const value of Object.values(mod)) {
          if ((value as { kind?: string })?.kind === "file") files.push(value as DescFile);
        }
      }
    }
  };
  await walk(GEN_DIR);
  return files;
}

/** A containerd type, keyed by full name, with the .pb.go it came from. */
type Theirs =
  | { kind: "message"; proto: DescriptorProto; source: string }
  | { kind: "enum"; proto: EnumDescriptorProto; source: string }
  | { kind: "service"; proto: ServiceDescriptorProto; source: string };

/** Indexes all top-level and nested types of a file by full name (no leading dot). */
function indexFile(file: FileDescriptorProto, source: string, into: Map<string, Theirs>) {
  const prefix = file.package ? `${file.package}.` : "";
  const addMessage = (m: DescriptorProto, scope: string) => {
    const name = scope + m.name;
    // Map entries are compared as part of their map field, not as types of their own.
    if (m.options?.mapEntry) return;
    into.set(name, { kind: "message", proto: m, source });
    for (const nested of m.nestedType) addMessage(nested, `${name}.`);
    for (const e of m.enumType) into.set(`${name}.${e.name}`, { kind: "enum", proto: e, source });
  };
  for (const m of file.messageType) addMessage(m, prefix);
  for (const e of file.enumType) into.set(prefix + e.name, { kind: "enum", proto: e, source });
  for (const s of file.service) into.set(prefix + s.name, { kind: "service", proto: s, source });
}

function labelName(l: FieldDescriptorProto_Label): string {
  return FieldDescriptorProto_Label[l] ?? String(l);
}
function typeName(t: FieldDescriptorProto_Type): string {
  return FieldDescriptorProto_Type[t] ?? String(t);
}

/** The map entry a field points at, if the field is a map. */
function mapEntryOf(msg: DescriptorProto, f: FieldDescriptorProto): DescriptorProto | undefined {
  if (f.type !== FieldDescriptorProto_Type.MESSAGE) return undefined;
  const local = f.typeName.split(".").pop();
  return msg.nestedType.find((n) => n.name === local && n.options?.mapEntry === true);
}

/** Describes one field the way the wire sees it, for comparison and messages. */
function fieldShape(msg: DescriptorProto, f: FieldDescriptorProto): string {
  const entry = mapEntryOf(msg, f);
  if (entry) {
    const [k, v] = [1, 2].map((n) => entry.field.find((e) => e.number === n));
    const part = (e?: FieldDescriptorProto) =>
      e ? `${typeName(e.type)}${e.typeName ? ` ${e.typeName}` : ""}` : "?";
    return `map<${part(k)}, ${part(v)}>`;
  }
  const oneof = isFieldSet(f, FieldDescriptorProtoSchema.field.oneofIndex)
    ? ` oneof#${f.oneofIndex}`
    : "";
  const optional = f.proto3Optional ? " proto3_optional" : "";
  return `${labelName(f.label)} ${typeName(f.type)}${
    f.typeName ? ` ${f.typeName}` : ""
  }${oneof}${optional}`;
}

/** Differences between containerd's message and ours, one line each. */
function compareMessage(name: string, theirs: DescriptorProto, ours: DescriptorProto) {
  const problems: string[] = [];
  const byNumber = (m: DescriptorProto) => new Map(m.field.map((f) => [f.number, f]));
  const ourFields = byNumber(ours);
  for (const tf of theirs.field) {
    const of = ourFields.get(tf.number);
    if (!of) {
      problems.push(`${name}: field ${tf.name} = ${tf.number} is missing`);
      continue;
    }
    if (of.name !== tf.name) {
      problems.push(`${name}: field ${tf.number} is named ${of.name}, containerd has ${tf.name}`);
    }
    const [ts, os] = [fieldShape(theirs, tf), fieldShape(ours, of)];
    if (ts !== os) {
      problems.push(`${name}.${tf.name} (${tf.number}): ours is ${os}, containerd's ${ts}`);
    }
  }
  const theirNumbers = byNumber(theirs);
  for (const of of ours.field) {
    if (!theirNumbers.has(of.number)) {
      problems.push(`${name}: field ${of.name} = ${of.number} is not in containerd's schema`);
    }
  }
  return problems;
}

/** Differences in enum values (both directions). */
function compareEnum(name: string, theirs: EnumDescriptorProto, ours: EnumDescriptorProto) {
  const shape = (e: EnumDescriptorProto) => new Map(e.value.map((v) => [v.name, v.number]));
  const [t, o] = [shape(theirs), shape(ours)];
  const problems: string[] = [];
  for (const [value, number] of t) {
    if (o.get(value) !== number) {
      problems.push(
        `${name}.${value}: containerd has ${number}, ours ${o.get(value) ?? "missing"}`,
      );
    }
  }
  for (const value of o.keys()) {
    if (!t.has(value)) problems.push(`${name}.${value}: not in containerd's enum`);
  }
  return problems;
}

/** Differences in methods: names, request/response types, streaming flags. */
function compareService(
  name: string,
  theirs: ServiceDescriptorProto,
  ours: ServiceDescriptorProto,
) {
  const shape = (s: ServiceDescriptorProto) =>
    new Map(s.method.map((m) => [
      m.name,
      `(${m.clientStreaming ? "stream " : ""}${m.inputType}) returns (${
        m.serverStreaming ? "stream " : ""
      }${m.outputType})`,
    ]));
  const [t, o] = [shape(theirs), shape(ours)];
  const problems: string[] = [];
  for (const [method, sig] of t) {
    const mine = o.get(method);
    if (mine !== sig) {
      problems.push(`${name}.${method}: containerd ${sig}, ours ${mine ?? "missing"}`);
    }
  }
  for (const method of o.keys()) {
    if (!t.has(method)) problems.push(`${name}.${method}: not in containerd's service`);
  }
  return problems;
}

/** Compares every containerd type against the registry; returns all differences. */
function compareAll(theirs: Map<string, Theirs>, ours: Registry): string[] {
  const problems: string[] = [];
  for (const [name, t] of theirs) {
    if (name in MISSING_ALLOWED) continue;
    const where = ` (from ${t.source.replace(`${GO_ROOT}/`, "")})`;
    switch (t.kind) {
      case "message": {
        const m = ours.getMessage(name);
        if (!m) problems.push(`message ${name} is missing from berth${where}`);
        else problems.push(...compareMessage(name, t.proto, m.proto));
        break;
      }
      case "enum": {
        const e = ours.getEnum(name);
        if (!e) problems.push(`enum ${name} is missing from berth${where}`);
        else problems.push(...compareEnum(name, t.proto, e.proto));
        break;
      }
      case "service": {
        const s = ours.getService(name);
        if (!s) problems.push(`service ${name} is missing from berth${where}`);
        else problems.push(...compareService(name, t.proto, s.proto));
        break;
      }
    }
  }
  return problems;
}

/** Every type our files declare, by full name. */
function ourTypeNames(files: DescFile[]): string[] {
  const names: string[] = [];
  const addMessages = (ms: DescFile["messages"]) => {
    for (const m of ms) {
      names.push(m.typeName);
      names.push(...m.nestedEnums.map((e) => e.typeName));
      addMessages(m.nestedMessages);
    }
  };
  for (const f of files) {
    addMessages(f.messages);
    names.push(...f.enums.map((e) => e.typeName), ...f.services.map((s) => s.typeName));
  }
  return names;
}

Deno.test({
  name: "proto: berth's schema matches containerd 1.6's compiled descriptors",
  ignore: !haveGoSources,
  async fn() {
    const sources = [...findPbGo(`${CONTAINERD}/api`), ...EXTRA_PB_GO];
    const theirs = new Map<string, Theirs>();
    for (const path of sources) {
      indexFile(extractFileDescriptor(Deno.readTextFileSync(path), path), path, theirs);
    }
    // Guards against a parse that silently finds nothing: 1.6 has ~28 files and
    // well over 200 types in this set.
    if (sources.length < 25 || theirs.size < 200) {
      throw new Error(`read only ${theirs.size} types from ${sources.length} files`);
    }

    const files = await loadOurFiles();
    const ours = createRegistry(...files);
    const problems = compareAll(theirs, ours);

    // Nothing in containerd's namespaces that containerd does not define
    // (catches a misspelled package or type name on our side).
    for (const name of ourTypeNames(files)) {
      const ownedByContainerd = name.startsWith("containerd.") || name.startsWith("io.containerd.");
      if (ownedByContainerd && !theirs.has(name) && !(name in EXTRA_ALLOWED)) {
        problems.push(`${name} is defined by berth but not by containerd 1.6`);
      }
    }

    // The v3 shim service must be v2's, method for method.
    const v2 = theirs.get("containerd.task.v2.Task");
    const v3 = ours.getService("containerd.task.v3.Task");
    if (v2?.kind !== "service" || !v3) problems.push("containerd.task.v2/v3 Task not found");
    else problems.push(...compareService("containerd.task.v3.Task", v2.proto, v3.proto));

    if (problems.length > 0) {
      throw new Error(
        `${problems.length} difference(s) from containerd's wire schema:\n  ${
          problems.join("\n  ")
        }`,
      );
    }
  },
});

Deno.test("proto compat: the comparison reports changed fields, enums and methods", () => {
  // A test of the checker itself, so a comparison that always passes cannot
  // hide behind a green run.
  const field = (name: string, number: number, type: FieldDescriptorProto_Type, label = 1) =>
    ({
      name,
      number,
      type,
      label,
      typeName: "",
      oneofIndex: 0,
      proto3Optional: false,
    }) as unknown as FieldDescriptorProto;
  const msg = (...fields: FieldDescriptorProto[]) =>
    ({ name: "M", field: fields, nestedType: [] }) as unknown as DescriptorProto;
  const T = FieldDescriptorProto_Type;
  const base = msg(field("id", 1, T.STRING), field("pid", 2, T.UINT32));
  if (compareMessage("M", base, base).length !== 0) throw new Error("identical messages differ");
  const cases: [DescriptorProto, RegExp][] = [
    [msg(field("id", 1, T.STRING), field("pid", 2, T.INT32)), /M\.pid \(2\): ours is .*INT32/],
    [msg(field("id", 1, T.STRING), field("pids", 2, T.UINT32)), /field 2 is named pids/],
    [msg(field("id", 1, T.STRING)), /field pid = 2 is missing/],
    [msg(field("id", 1, T.STRING), field("pid", 2, T.UINT32, 3)), /ours is REPEATED UINT32/],
    [msg(field("id", 1, T.STRING), field("pid", 3, T.UINT32)), /pid = 3 is not in containerd/],
  ];
  // Maps are told apart from repeated messages by their entry type.
  const entry = (value: FieldDescriptorProto_Type) =>
    ({
      name: "LabelsEntry",
      field: [field("key", 1, T.STRING), field("value", 2, value)],
      nestedType: [],
      options: { mapEntry: true },
    }) as unknown as DescriptorProto;
  const mapMsg = (value: FieldDescriptorProto_Type, isMap = true) =>
    ({
      name: "M",
      field: [{ ...field("labels", 1, T.MESSAGE, 3), typeName: ".M.LabelsEntry" }],
      nestedType: [isMap ? entry(value) : { ...entry(value), options: undefined }],
    }) as unknown as DescriptorProto;
  if (compareMessage("M", mapMsg(T.STRING), mapMsg(T.STRING)).length !== 0) {
    throw new Error("identical maps differ");
  }
  if (
    !/map<STRING, STRING>.*map<STRING, BYTES>|map<STRING, BYTES>.*map<STRING, STRING>/.test(
      compareMessage("M", mapMsg(T.STRING), mapMsg(T.BYTES)).join(),
    )
  ) throw new Error("map value type change not reported");
  if (
    !/ours is REPEATED MESSAGE/.test(
      compareMessage("M", mapMsg(T.STRING), mapMsg(T.STRING, false)).join(),
    )
  ) throw new Error("map turned repeated message not reported");

  for (const [ours, expected] of cases) {
    const problems = compareMessage("M", base, ours).join("\n");
    if (!expected.test(problems)) throw new Error(`expected ${expected}, got: ${problems}`);
  }
  const en = (...values: [string, number][]) =>
    ({
      name: "E",
      value: values.map(([name, number]) => ({ name, number })),
    }) as unknown as EnumDescriptorProto;
  if (
    !/E\.B: containerd has 1, ours 2/.test(
      compareEnum("E", en(["A", 0], ["B", 1]), en(["A", 0], ["B", 2])).join(),
    )
  ) {
    throw new Error("enum number change not reported");
  }
  const svc = (serverStreaming: boolean) =>
    ({
      name: "S",
      method: [{
        name: "Get",
        inputType: ".a.Req",
        outputType: ".a.Resp",
        clientStreaming: false,
        serverStreaming,
      }],
    }) as unknown as ServiceDescriptorProto;
  if (!/S\.Get: containerd/.test(compareService("S", svc(false), svc(true)).join())) {
    throw new Error("streaming flag change not reported");
  }
});
