/**
 * `berth events`: stream the daemon's events (with ctr's filters) until Ctrl-C.
 * @module
 */
import { fromBinary, toJson } from "@bufbuild/protobuf";
import { EVENT_TYPES } from "../../events/mod.ts";
import { Code } from "../../errdefs/mod.ts";
import { Events } from "../../gen/containerd/services/events/v1/events_pb.ts";
import type { Envelope } from "../../gen/containerd/services/events/v1/events_pb.ts";
import type { CommandSpec } from "../cli.ts";
import { withConnection } from "../connection.ts";
import { toJSON } from "../output.ts";

/** The event payload as JSON text, or "" when its type is unknown to this client. */
export function eventJSON(e: Envelope): string {
  if (!e.event) return "";
  const name = e.event.typeUrl.slice(e.event.typeUrl.lastIndexOf("/") + 1);
  const desc = EVENT_TYPES.getMessage(name);
  if (!desc) return "";
  return JSON.stringify(toJson(desc, fromBinary(desc, e.event.value), { registry: EVENT_TYPES }));
}

/** Go's time.Time String() shape, as ctr prints event timestamps. */
export function goTime(ts: { seconds: bigint; nanos: number } | undefined): string {
  if (!ts) return "0001-01-01 00:00:00 +0000 UTC";
  const d = new Date(Number(ts.seconds) * 1000);
  const frac = ts.nanos ? "." + String(ts.nanos).padStart(9, "0").replace(/0+$/, "") : "";
  return d.toISOString().replace("T", " ").replace(/\.\d+Z$/, "") + frac + " +0000 UTC";
}

/** The `events` command. */
export const command: CommandSpec = {
  name: "events",
  aliases: ["event"],
  usage: "display berth events (until Ctrl-C)",
  argsUsage: "[FILTER ...]",
  flags: { format: { type: "string", help: "output format: text or json", default: "text" } },
  async run({ flags, args, global }) {
    return await withConnection(global, async (conn) => {
      const stop = () => conn.abort.abort();
      Deno.addSignalListener("SIGINT", stop);
      Deno.addSignalListener("SIGTERM", stop);
      try {
        for await (const e of conn.service(Events).subscribe({ filters: args })) {
          if (flags.format === "json") {
            const body = eventJSON(e);
            console.log(
              toJSON({
                timestamp: goTime(e.timestamp),
                namespace: e.namespace,
                topic: e.topic,
                event: body ? JSON.parse(body) : null,
              }).replace(/\n\t*/g, ""),
            );
          } else console.log(goTime(e.timestamp), e.namespace, e.topic, eventJSON(e));
        }
      } catch (err) {
        if (!(conn.abort.signal.aborted && (err as { code?: Code }).code === Code.Canceled)) {
          throw err;
        }
      } finally {
        Deno.removeSignalListener("SIGINT", stop);
        Deno.removeSignalListener("SIGTERM", stop);
      }
      return 0;
    });
  },
};
