/**
 * `berth shim`: talk to a container's shim directly over its ttrpc socket (state, start, delete).
 * @module
 */
import { Code } from "../../errdefs/mod.ts";
import { Task } from "../../gen/containerd/task/v2/shim_pb.ts";
import { socketDir, socketPath } from "../../shim/mod.ts";
import { connect, serviceClient } from "../../ttrpc/mod.ts";
import { TTRPC_NAMESPACE_KEY } from "../../namespaces/mod.ts";
import { type GlobalOptions, type GroupSpec, str, usageError } from "../cli.ts";
import { HintedError } from "../errors.ts";
import { printJSON, timestampText } from "../output.ts";
import { statusName } from "../task.ts";

/** The sockets a shim of container `id` may listen on, best guess first. */
async function candidates(global: GlobalOptions, id: string): Promise<string[]> {
  // berth's shims, and containerd's runc shim (which berth daemon can run too).
  const out: string[] = [];
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
