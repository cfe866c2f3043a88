/**
 * `berth publish`: what a shim's `-publish-binary` runs. Reads one event
 * (a binary google.protobuf.Any) from stdin and forwards it, stamped now,
 * to the daemon's ttrpc Events service. Accepts containerd's argv shapes:
 * `berth publish --address A --topic T --namespace N` and
 * `berth --address A publish --topic T --namespace N`.
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { AnySchema, timestampNow } from "@bufbuild/protobuf/wkt";
import { invalidArgument } from "../errdefs/mod.ts";
import { Events } from "../gen/containerd/services/events/ttrpc/v1/events_pb.ts";
import { connect, serviceClient } from "../ttrpc/mod.ts";
import { validateEnvelope } from "../events/mod.ts";
import { parseArgs } from "../args/mod.ts";
import { DEFAULT_ADDRESS, ttrpcSocket } from "../defaults/mod.ts";

async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

/**
 * Runs `berth publish` with `args` (the words around "publish", which is
 * dropped); returns the exit status. `stdin` is where the event comes from.
 */
export async function publishMain(
  args: string[],
  stdin: ReadableStream<Uint8Array> = Deno.stdin.readable,
): Promise<number> {
  let client;
  try {
    const { values, positionals } = parseArgs({
      args,
      options: {
        address: { type: "string", short: "a" },
        topic: { type: "string" },
        namespace: { type: "string", short: "n" },
      },
      strict: true,
      allowPositionals: true,
    });
    const extra = positionals.filter((p) => p !== "publish");
    if (extra.length > 0) throw invalidArgument(`unexpected arguments: ${extra.join(" ")}`);
    if (!values.topic) throw invalidArgument("--topic is required to publish an event");
    if (!values.namespace) throw invalidArgument("--namespace is required to publish an event");
    const address = values.address ?? Deno.env.get("TTRPC_ADDRESS") ?? DEFAULT_ADDRESS;
    let event;
    try {
      event = fromBinary(AnySchema, await readAll(stdin));
    } catch (err) {
      throw invalidArgument(`stdin does not hold a protobuf Any: ${(err as Error).message}`);
    }
    if (event.typeUrl === "") throw invalidArgument("the event read from stdin has no type URL");
    const envelope = {
      timestamp: timestampNow(),
      namespace: values.namespace,
      topic: values.topic,
      event,
    };
    validateEnvelope(envelope); // say what is wrong here rather than as the daemon's answer
    client = await connect(ttrpcSocket(address));
    await serviceClient(client, Events).forward({ envelope }, { timeoutMs: 5000 });
    return 0;
  } catch (err) {
    console.error(`berth publish: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  } finally {
    client?.close();
  }
}
