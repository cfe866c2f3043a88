/**
 * `berth debug`: the daemon's debug socket (`[debug] address` in its
 * config): a heap snapshot, a CPU profile, the calls in flight. The socket
 * speaks HTTP; this command is its client.
 */
import { BerthError, Code } from "../../errdefs/mod.ts";
import { type FlagValues, type GroupSpec, str, usageError } from "../cli.ts";
import { printJSON, write } from "../output.ts";

/** Where the debug socket is unless --socket or BERTH_DEBUG_ADDRESS says otherwise. */
export const DEFAULT_DEBUG_SOCKET = "/run/berth/debug.sock";

function socketOf(flags: FlagValues): string {
  return (str(flags, "socket") ?? Deno.env.get("BERTH_DEBUG_ADDRESS") ??
    DEFAULT_DEBUG_SOCKET).replace(/^unix:\/\//, "");
}

/** GETs `path` on the debug socket; a failure names the socket and says how to turn it on. */
async function get(socket: string, path: string): Promise<Response> {
  const client = Deno.createHttpClient({ proxy: { transport: "unix", path: socket } });
  let res: Response;
  try {
    res = await fetch(`http://berth${path}`, { client });
  } catch (err) {
    client.close();
    throw new BerthError(
      Code.Unavailable,
      `cannot reach the debug socket ${socket}: ${
        (err as Error).message
      } (the daemon serves it with [debug] address = "${socket}" in its config)`,
    );
  }
  if (!res.ok) {
    const body = await res.json().catch(() => ({})) as { code?: number; message?: string };
    client.close();
    throw new BerthError(
      body.code ?? Code.Unknown,
      body.message ?? `debug socket answered ${res.status}`,
    );
  }
  // The client stays open until the body is read; closing it then is the caller's read's end.
  return new Response(
    res.body?.pipeThrough(
      new TransformStream({
        flush: () => client.close(),
      }),
    ),
    { headers: res.headers },
  );
}

/** Writes a response body to `out` (a file, created 0600) or to stdout. */
async function save(res: Response, out: string | undefined): Promise<void> {
  if (out === undefined) {
    await res.body?.pipeTo(Deno.stdout.writable, { preventClose: true });
    return;
  }
  const file = await Deno.open(out, { write: true, create: true, truncate: true, mode: 0o600 });
  await res.body?.pipeTo(file.writable);
  console.error(`wrote ${out}`);
}

const SOCKET_FLAG = {
  socket: {
    type: "string" as const,
    help: `the daemon's debug socket (env BERTH_DEBUG_ADDRESS, default ${DEFAULT_DEBUG_SOCKET})`,
  },
};

/** The `debug` group. */
export const group: GroupSpec = {
  name: "debug",
  usage: "heap snapshot, CPU profile and calls in flight of the daemon (its debug socket)",
  flags: SOCKET_FLAG,
  commands: [
    {
      name: "heap",
      usage: "write a heap snapshot of the daemon (.heapsnapshot, for Chrome DevTools)",
      flags: { ...SOCKET_FLAG, output: { type: "string", short: "o", help: "file to write" } },
      async run({ flags }) {
        await save(await get(socketOf(flags), "/debug/heap"), str(flags, "output"));
        return 0;
      },
    },
    {
      name: "profile",
      usage: "profile the daemon's CPU for some seconds (.cpuprofile, for Chrome DevTools)",
      flags: {
        ...SOCKET_FLAG,
        seconds: { type: "string", help: "how long to sample", default: "30" },
        output: { type: "string", short: "o", help: "file to write" },
      },
      async run({ flags }) {
        const seconds = Number(str(flags, "seconds"));
        if (!(seconds > 0)) {
          throw usageError(`--seconds "${str(flags, "seconds")}": expected a positive number`);
        }
        await save(
          await get(socketOf(flags), `/debug/profile?seconds=${seconds}`),
          str(flags, "output"),
        );
        return 0;
      },
    },
    {
      name: "requests",
      aliases: ["req"],
      usage: "list the daemon's RPC calls in flight, oldest first, with their age",
      flags: {
        ...SOCKET_FLAG,
        format: { type: "string", help: "output format: table or json", default: "table" },
      },
      async run({ flags }) {
        const res = await get(socketOf(flags), "/debug/requests");
        const { requests } = await res.json() as {
          requests: Array<
            {
              transport: string;
              service: string;
              method: string;
              ageSeconds: number;
              started: string;
            }
          >;
        };
        if (flags.format === "json") {
          printJSON(requests);
          return 0;
        }
        const rows = requests.map((r) =>
          `${r.ageSeconds.toFixed(3).padStart(10)}s  ${
            r.transport.padEnd(6)
          } ${r.service}/${r.method}`
        );
        write(
          `${"AGE".padStart(11)}  ${"RPC".padEnd(6)} METHOD\n${rows.map((r) => r + "\n").join("")}`,
        );
        return 0;
      },
    },
  ],
};
