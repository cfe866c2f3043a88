/**
 * What tracing costs a call when it is off, idle and on: ttrpc unary
 * Task.State round trips per second, client and server in this process on
 * one connection, 32 calls in flight, in interleaved rounds of
 *   - off:    no tracer installed (a shim started with no tracing settings),
 *   - idle:   a tracer with sampling ratio 0 and no sampled caller (berth
 *             daemon's default: one metadata lookup per call),
 *   - traced: every call sampled (a client span and a server span per
 *             call, queued to a sink that drops them).
 *
 *     deno run -A bench/tracing_cost.ts [--rounds 7] [--ms 1000]
 * @module
 */

import { parseArgs } from "../src/args/mod.ts";
import { Task } from "../src/gen/containerd/task/v2/shim_pb.ts";
import { connect, Server, serviceClient } from "../src/ttrpc/mod.ts";
import { setTracer, type Span, type SpanSink, Tracer } from "../src/tracing/mod.ts";

const DROP: SpanSink = { add() {}, flush: () => Promise.resolve() };

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: { rounds: { type: "string" }, ms: { type: "string" } },
  });
  const rounds = Number(values.rounds ?? 7);
  const ms = Number(values.ms ?? 1000);
  const dir = await Deno.makeTempDir({ prefix: "berth-trace-cost-" });
  const server = new Server();
  server.register(Task, { state: (req) => ({ id: req.id, pid: 1 }) });
  await server.listen(`${dir}/s.sock`);
  const client = await connect(`${dir}/s.sock`);
  const task = serviceClient(client, Task);
  const idle = new Tracer({ service: "bench", sinks: [DROP] });
  const sampled = new Tracer({ service: "bench", sinks: [DROP] });

  const measure = async (root: Span | undefined): Promise<number> => {
    const opts = root === undefined ? undefined : { trace: root };
    let calls = 0;
    const end = performance.now() + ms;
    const worker = async () => {
      while (performance.now() < end) {
        await task.state({ id: "c1" }, opts);
        calls++;
      }
    };
    const t0 = performance.now();
    await Promise.all(Array.from({ length: 32 }, worker));
    return calls / ((performance.now() - t0) / 1000);
  };
  const modes: Record<string, () => Promise<number>> = {
    off: () => {
      setTracer(undefined);
      return measure(undefined);
    },
    idle: () => {
      setTracer(idle);
      return measure(undefined);
    },
    traced: () => {
      setTracer(idle);
      return measure(sampled.forced("bench"));
    },
  };
  const results: Record<string, number[]> = { off: [], idle: [], traced: [] };
  await modes.off(); // warm-up
  const names = Object.keys(modes);
  for (let r = 0; r < rounds; r++) {
    // Rotate the order each round so drifting load lands on every mode alike.
    for (let i = 0; i < names.length; i++) {
      const name = names[(i + r) % names.length];
      results[name].push(await modes[name]());
    }
  }
  setTracer(undefined);
  client.close();
  await server.close();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
  const base = median(results.off);
  console.log(
    `ttrpc Task.State, 32 in flight, ${rounds} rounds of ${ms} ms (${new Date().toISOString()})`,
  );
  console.log("mode     calls/s (median)   vs off");
  for (const n of names) {
    const m = median(results[n]);
    console.log(`${n.padEnd(8)} ${m.toFixed(0).padStart(16)}   ${(m / base).toFixed(3)}x`);
  }
}

if (import.meta.main) await main();
