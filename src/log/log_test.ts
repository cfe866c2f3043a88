import assert from "node:assert/strict";
import { formatLine, log, setLogFormat, setLogLevel, setLogSink } from "./mod.ts";

Deno.test("log: logrus text shape, quoting values that need it", () => {
  const line = formatLine("info", "shim started", { id: "c1", path: "/run/x y" }, new Date(0));
  assert.equal(
    line,
    `time="1970-01-01T00:00:00.000Z" level=info msg="shim started" id=c1 path="/run/x y"\n`,
  );
});

Deno.test("log: level threshold, json format and sink", () => {
  const lines: string[] = [];
  setLogSink((l) => lines.push(l));
  try {
    setLogLevel("warn");
    log.info("hidden");
    log.warn("shown", { n: 1 });
    setLogFormat("json");
    log.error("as json");
    assert.equal(lines.length, 2);
    assert.match(lines[0], /level=warn msg="shown" n=1/);
    assert.deepEqual(JSON.parse(lines[1]).msg, "as json");
    assert.throws(() => setLogLevel("loud"), /unknown log level/);
  } finally {
    setLogFormat("text");
    setLogLevel("info");
    setLogSink((l) => Deno.stderr.writeSync(new TextEncoder().encode(l)));
  }
});
