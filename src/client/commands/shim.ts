/**
 * `berth shim`: talk to a container's shim directly over its ttrpc socket (state, start, delete).
 * @module
 */
import { Code } from "../../errdefs/mod.ts";
import { Task } from "../../gen/containerd/task/v2/shim_pb.ts";
import { socketDir, socketPath } from "../../shim/mod.ts";
import { connect, serviceClient } from "../../ttrpc/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../../namespaces/mod.ts";
import { Introspection } from "../../gen/containerd/services/introspection/v1/introspection_pb.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { type GlobalOptions, type GroupSpec, str, usageError } from "../cli.ts";
import { type Connection, withConnection } from "../connection.ts";
import { HintedError } from "../errors.ts";
import { humanSize, printJSON, printTable, timestampText } from "../output.ts";
import { statusName } from "../task.ts";

/**
 * The address the task's bundle names, asked of the daemon: where its
 * runtime keeps bundles (the task manager plugin's `state` export). A
 * daemon puts containers into shims it shares, so a shim's socket is not
 * always named after the container.
 */
async function bundleAddress(global: GlobalOptions, id: string): Promise<string | undefined> {
  try {
    const state = await withConnection(global, runtimeState);
    return state === undefined ? undefined : await addressOf(state, global.namespace, id);
  } catch {
    return undefined; // no daemon, or no such task: the guesses below remain
  }
}

/** Where the daemon's runtime keeps bundles (the task manager plugin's `state` export). */
async function runtimeState(c: Connection): Promise<string | undefined> {
  const { plugins } = await c.service(Introspection).plugins({
    filters: ["type==io.containerd.runtime.v2"],
  });
  return plugins.find((p) => p.exports.state)?.exports.state;
}

/** The socket path a task's bundle names. */
async function addressOf(state: string, namespace: string, id: string): Promise<string> {
  const text = await Deno.readTextFile(`${state}/${namespace}/${id}/address`);
  return text.trim().replace(/^unix:\/\//, "");
}

/** Rss and Pss of process `pid` in bytes (from smaps_rollup); undefined when unreadable. */
function memoryOf(pid: number): { rss: number; pss: number } | undefined {
  try {
    const text = Deno.readTextFileSync(`/proc/${pid}/smaps_rollup`);
    const kib = (name: string) => Number(new RegExp(`^${name}:\\s+(\\d+) kB`, "m").exec(text)?.[1]);
    return { rss: kib("Rss") * 1024, pss: kib("Pss") * 1024 };
  } catch {
    return undefined;
  }
}

/** One shim serving tasks of the namespace, as `shims ls` shows it. */
interface ShimRow {
  socket: string;
  pid: number;
  memory?: { rss: number; pss: number };
  tasks: string[];
}

/** The shims serving the namespace's tasks, asked of the daemon and of each shim. */
async function listShims(global: GlobalOptions): Promise<ShimRow[]> {
  const { state, ids } = await withConnection(global, async (c) => ({
    state: await runtimeState(c),
    ids: (await c.service(Tasks).list({})).tasks.map((t) => t.id),
  }));
  if (state === undefined) {
    throw new HintedError(
      Code.Unavailable,
      "the daemon runs no task runtime",
      "is its io.containerd.runtime.v2.task plugin disabled? see `berth plugins ls`",
    );
  }
  const bySocket = new Map<string, string[]>();
  for (const id of ids) {
    const socket = await addressOf(state, global.namespace, id).catch(() => undefined);
    if (socket !== undefined) bySocket.set(socket, [...(bySocket.get(socket) ?? []), id]);
  }
  const rows: ShimRow[] = [];
  for (const [socket, tasks] of bySocket) {
    let pid = 0;
    let client;
    try {
      client = await connect(socket);
      const task = serviceClient(client, Task, {
        defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: global.namespace } },
      });
      pid = (await task.connect({ id: tasks[0] }, { timeoutMs: 5000 })).shimPid;
    } catch {
      // not answering: listed with pid 0
    } finally {
      client?.close();
    }
    rows.push({ socket, pid, memory: pid ? memoryOf(pid) : undefined, tasks: tasks.sort() });
  }
  return rows.sort((a, b) => a.pid - b.pid);
}

/** The sockets a shim of container `id` may listen on, best guess first. */
async function candidates(global: GlobalOptions, id: string): Promise<string[]> {
  const out: string[] = [];
  const named = await bundleAddress(global, id);
  if (named !== undefined) out.push(named);
  // berth's shims, and containerd's runc shim (which berth daemon can run too).
  for (const dir of [socketDir(), "/run/containerd/s"]) {
    for (const addr of [global.address, `${global.address}.ttrpc`]) {
      out.push(await socketPath(dir, addr, global.namespace, id));
    }
  }
  return out;
}

async function withShim<T>(
  global: GlobalOptions,
  flags: Record<string, unknown>,
  fn: (task: ReturnType<typeof serviceClient<typeof Task>>, id: string) => Promise<T>,
): Promise<T> {
  const id = str(flags as never, "id");
  if (!id) throw usageError("container id must be specified (berth shim --id ID ...)");
  const explicit = str(flags as never, "socket");
  const paths = explicit ? [explicit] : await candidates(global, id);
  for (const p of paths) {
    let client;
    try {
      client = await connect(p);
    } catch {
      continue;
    }
    try {
      return await fn(
        serviceClient(client, Task, {
          defaults: { metadata: { [TTRPC_NAMESPACE_KEY]: global.namespace } },
        }),
        id,
      );
    } finally {
      client.close();
    }
  }
  throw new HintedError(
    Code.Unavailable,
    `cannot connect to the shim of container "${id}" (tried ${paths.join(", ")})`,
    "is its task running? name the socket with --socket PATH",
  );
}

/** The `shim` group. */
export const group: GroupSpec = {
  name: "shim",
  aliases: ["shims"],
  usage: "interact with a shim directly",
  flags: {
    id: { type: "string", help: "container id" },
    socket: {
      type: "string",
      help: "the shim's socket (default: derived from address, namespace and id)",
    },
  },
  commands: [
    {
      name: "list",
      aliases: ["ls"],
      usage: "list the shims serving this namespace's tasks, with their memory and containers",
      flags: {
        format: { type: "string", help: "output format: table or json", default: "table" },
      },
      async run({ flags, global }) {
        const rows = await listShims(global);
        if (flags.format === "json") {
          printJSON(rows.map((r) => ({
            pid: r.pid,
            socket: r.socket,
            rss: r.memory?.rss,
            pss: r.memory?.pss,
            tasks: r.tasks,
          })));
          return 0;
        }
        const size = (n: number | undefined) => n === undefined ? "-" : humanSize(n);
        printTable(
          ["PID", "RSS", "PSS", "TASKS", "CONTAINERS"],
          rows.map((r) => [
            String(r.pid || "-"),
            size(r.memory?.rss),
            size(r.memory?.pss),
            String(r.tasks.length),
            r.tasks.join(","),
          ]),
        );
        return 0;
      },
    },
    {
      name: "state",
      usage: "get the state of all the processes of the task",
      async run({ flags, global }) {
        const r = await withShim(global, flags, (t, id) => t.state({ id }));
        printJSON({
          id: r.id,
          bundle: r.bundle,
          pid: r.pid,
          status: statusName(r.status as number),
          stdin: r.stdin,
          stdout: r.stdout,
          stderr: r.stderr,
          terminal: r.terminal,
          exit_status: r.exitStatus,
          exited_at: timestampText(r.exitedAt),
          exec_id: r.execId,
        });
        return 0;
      },
    },
    {
      name: "start",
      usage: "start a container with a task",
      argsUsage: "[EXEC_ID]",
      async run({ flags, args, global }) {
        const r = await withShim(global, flags, (t, id) => t.start({ id, execId: args[0] ?? "" }));
        console.log(r.pid);
        return 0;
      },
    },
    {
      name: "delete",
      usage: "delete a container with a task",
      argsUsage: "[EXEC_ID]",
      async run({ flags, args, global }) {
        const r = await withShim(global, flags, (t, id) => t.delete({ id, execId: args[0] ?? "" }));
        console.log(`container deleted and returned exit status ${r.exitStatus}`);
        return 0;
      },
    },
  ],
};
