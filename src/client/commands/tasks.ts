/**
 * `berth tasks`: start, ls, attach, exec, kill, ps, pause, resume, delete, metrics.
 * @module
 */
import { createRegistry, fromBinary, toJson } from "@bufbuild/protobuf";
import { Code } from "../../errdefs/mod.ts";
import { signalNumber } from "../../../ffi/mod.ts";
import { file_containerd_cgroups_v1_metrics } from "../../gen/containerd/cgroups/v1/metrics_pb.ts";
import { file_containerd_cgroups_v2_metrics } from "../../gen/containerd/cgroups/v2/metrics_pb.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { Status } from "../../gen/containerd/types/task_pb.ts";
import { type CommandSpec, type GroupSpec, str, usageError } from "../cli.ts";
import { getContainer, specOf } from "../container.ts";
import { type Connection, withConnection } from "../connection.ts";
import { HintedError } from "../errors.ts";
import { runAttached } from "../foreground.ts";
import {
  formatTable,
  listFlags,
  printJSON,
  printList,
  printTable,
  timestampText,
  WIDE,
  write,
} from "../output.ts";
import { FifoIO, needTerminal, terminalSize } from "../stdio.ts";
import {
  createTask,
  explainTaskError,
  getTask,
  openIO,
  removeFifoDir,
  statusName,
} from "../task.ts";

const PROCESS_TYPE_URL = "types.containerd.io/opencontainers/runtime-spec/1/Process";

function needId(args: string[]): string {
  if (!args[0]) throw usageError("container id must be provided");
  return args[0];
}

/** Runs a Tasks call on container `id`; its NotFound says what is missing (see explainTaskError). */
async function taskCall<T>(
  conn: Connection,
  id: string,
  fn: () => Promise<T>,
  exec = "",
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw await explainTaskError(conn, err, id, exec);
  }
}

/** Parses a signal given as a name (SIGKILL, KILL) or a number. */
export function parseSignal(text: string): number {
  if (/^\d+$/.test(text)) return signalNumber(Number(text));
  const name = text.toUpperCase();
  try {
    return signalNumber(name.startsWith("SIG") ? name : `SIG${name}`);
  } catch {
    throw usageError(`unknown signal "${text}" (use a name like SIGTERM or a number)`);
  }
}

const IO_FLAGS = {
  "null-io": { type: "boolean" as const, help: "send all IO to /dev/null" },
  "log-uri": { type: "string" as const, help: "log uri (file:///path, binary:///path?args)" },
  "fifo-dir": { type: "string" as const, help: "directory for the stdio fifos" },
};

/** `pause` and `resume`: one Tasks call on the container named, nothing printed. */
function containerAction(method: "pause" | "resume", usage: string): CommandSpec {
  return {
    name: method,
    usage,
    argsUsage: "CONTAINER",
    async run({ args, global }) {
      const id = needId(args);
      await withConnection(
        global,
        (conn) => taskCall(conn, id, () => conn.service(Tasks)[method]({ containerId: id })),
      );
      return 0;
    },
  };
}

/** The `tasks` group. */
export const group: GroupSpec = {
  name: "tasks",
  aliases: ["t", "task"],
  usage: "manage tasks",
  commands: [
    {
      name: "attach",
      usage: "attach to the IO of a running container",
      argsUsage: "CONTAINER",
      async run({ args, global }) {
        const id = needId(args);
        return await withConnection(global, async (conn) => {
          const p = await getTask(conn, id);
          if (!p.stdout || p.stdout.includes("://")) {
            throw new HintedError(
              Code.FailedPrecondition,
              `task "${id}" has no fifos to attach to (started with --null-io or --log-uri)`,
              "",
            );
          }
          const io = await openExisting(p.stdin, p.stdout, p.stderr);
          return await runAttached(conn, { containerId: id, execId: "", io, tty: p.terminal });
        });
      },
    },
    {
      name: "delete",
      aliases: ["del", "remove", "rm"],
      usage: "delete one or more tasks",
      argsUsage: "CONTAINER [CONTAINER ...]",
      flags: {
        force: { type: "boolean", short: "f", help: "force delete task process (kill it first)" },
        "exec-id": { type: "string", help: "process id to delete" },
      },
      async run({ flags, args, global }) {
        if (args.length === 0) throw usageError("must specify at least one task to delete");
        const execId = str(flags, "exec-id") ?? "";
        let status = 0;
        await withConnection(global, async (conn) => {
          const tasks = conn.service(Tasks);
          for (const id of args) {
            await taskCall(conn, id, async () => {
              if (execId) {
                await tasks.deleteProcess({ containerId: id, execId });
                return;
              }
              const p = await getTask(conn, id);
              if (p.status !== Status.STOPPED && p.status !== Status.CREATED) {
                if (!flags.force) {
                  throw new HintedError(
                    Code.FailedPrecondition,
                    `task "${id}" is ${statusName(p.status)}: it must be stopped before deleting`,
                    `kill it first (berth -n ${conn.namespace} tasks kill ${id}), or use --force`,
                  );
                }
                const waited = tasks.wait({ containerId: id });
                await tasks.kill({ containerId: id, signal: signalNumber("SIGKILL"), all: true });
                await waited;
              }
              const r = await tasks.delete({ containerId: id });
              await removeFifoDir(p);
              if (r.exitStatus !== 0) status = r.exitStatus;
            }, execId);
          }
        });
        return status;
      },
    },
    {
      name: "exec",
      usage: "execute additional processes in an existing container",
      argsUsage: "[flags] CONTAINER COMMAND [ARG...]",
      passthrough: 1,
      flags: {
        cwd: { type: "string", help: "working directory of the new process" },
        tty: { type: "boolean", short: "t", help: "allocate a TTY for the process" },
        detach: { type: "boolean", short: "d", help: "detach from the task after it has started" },
        "exec-id": { type: "string", help: "exec specific id for the process (required)" },
        user: { type: "string", help: "user id or name" },
        "fifo-dir": IO_FLAGS["fifo-dir"],
        "log-uri": IO_FLAGS["log-uri"],
      },
      async run({ flags, args, global }) {
        const id = needId(args);
        const cmd = args.slice(1);
        const execId = str(flags, "exec-id");
        if (!execId) throw usageError("exec-id must be provided (--exec-id NAME)");
        if (cmd.length === 0) throw usageError("please name a command to run");
        const tty = flags.tty === true;
        if (tty && flags.detach !== true && str(flags, "log-uri") === undefined) {
          needTerminal("-t");
        }
        return await withConnection(global, async (conn) => {
          const c = await getContainer(conn, id);
          const spec = specOf(c);
          if (!spec) {
            throw new HintedError(Code.FailedPrecondition, `container "${id}" has no spec`, "");
          }
          const process: Record<string, unknown> & typeof spec.process = {
            ...spec.process,
            args: cmd,
            terminal: tty,
          };
          // runc sizes an exec's console from the spec: no 0x0 moment before the first resize.
          if (tty) {
            const size = terminalSize();
            if (size) process.consoleSize = { height: size.rows, width: size.cols };
          }
          if (str(flags, "cwd")) process.cwd = str(flags, "cwd")!;
          if (str(flags, "user")) {
            const { parseUser } = await import("../../oci/mod.ts");
            process.user = parseUser(str(flags, "user")!);
          }
          const { choice, io } = await openIO(conn, flags, global.address, {
            containerId: id,
            execId,
            terminal: tty,
            detach: flags.detach === true,
          });
          const tasks = conn.service(Tasks);
          await taskCall(conn, id, () =>
            tasks.exec({
              containerId: id,
              execId,
              ...choice,
              spec: {
                typeUrl: PROCESS_TYPE_URL,
                value: new TextEncoder().encode(JSON.stringify(process)),
              },
            }));
          if (flags.detach) {
            await tasks.start({ containerId: id, execId });
            return 0;
          }
          const status = await runAttached(conn, {
            containerId: id,
            execId,
            io,
            tty,
            start: async () => {
              await tasks.start({ containerId: id, execId });
            },
            remove: () => tasks.deleteProcess({ containerId: id, execId }),
          });
          return status;
        });
      },
    },
    {
      name: "kill",
      usage: "signal a container (default: SIGTERM)",
      argsUsage: "[flags] CONTAINER",
      flags: {
        signal: { type: "string", short: "s", help: "signal to send", default: "SIGTERM" },
        "exec-id": { type: "string", help: "process id to kill" },
        all: {
          type: "boolean",
          short: "a",
          help: "send signal to all processes inside the container",
        },
      },
      async run({ flags, args, global }) {
        const id = needId(args);
        const signal = parseSignal(str(flags, "signal") ?? "SIGTERM");
        const execId = str(flags, "exec-id") ?? "";
        if (execId && flags.all) throw usageError("--exec-id and --all cannot be used together");
        await withConnection(
          global,
          (conn) =>
            taskCall(
              conn,
              id,
              () =>
                conn.service(Tasks).kill({
                  containerId: id,
                  execId,
                  signal,
                  all: flags.all === true,
                }),
              execId,
            ),
        );
        return 0;
      },
    },
    {
      name: "list",
      aliases: ["ls"],
      usage: "list tasks",
      flags: listFlags("the task id"),
      async run({ flags, global }) {
        const { tasks } = await withConnection(
          global,
          (conn) => taskCall(conn, "", () => conn.service(Tasks).list({})),
        );
        printList(flags, tasks, {
          key: (t) => t.id,
          json: (t) => ({
            id: t.id,
            pid: t.pid,
            status: statusName(t.status),
            exitStatus: t.exitStatus,
          }),
          table: (ts) =>
            printTable(
              ["TASK", "PID", "STATUS"],
              ts.map((t) => [t.id, String(t.pid), statusName(t.status)]),
              WIDE,
            ),
        });
        return 0;
      },
    },
    {
      name: "metrics",
      aliases: ["metric"],
      usage: "get a single data point of metrics for a task with the built-in Linux runtime",
      argsUsage: "CONTAINER",
      flags: { format: { type: "string", help: "output format: table or json", default: "table" } },
      async run({ flags, args, global }) {
        const id = needId(args);
        const { metrics } = await withConnection(
          global,
          (conn) =>
            taskCall(conn, id, () => conn.service(Tasks).metrics({ filters: [`id==${id}`] })),
        );
        const m = metrics[0];
        if (!m) {
          throw new HintedError(
            Code.NotFound,
            `no metrics for task "${id}"`,
            `is it running? see: berth -n ${global.namespace} tasks ls`,
          );
        }
        const registry = createRegistry(
          file_containerd_cgroups_v1_metrics,
          file_containerd_cgroups_v2_metrics,
        );
        const typeName = m.data ? m.data.typeUrl.slice(m.data.typeUrl.lastIndexOf("/") + 1) : "";
        const desc = registry.getMessage(typeName);
        const data = desc && m.data
          ? toJson(desc, fromBinary(desc, m.data.value), { registry }) as Record<
            string,
            Record<string, unknown>
          >
          : {};
        if (flags.format === "json") {
          printJSON(data);
          return 0;
        }
        const rows: string[][] = [["ID", "TIMESTAMP"], [m.id, timestampText(m.timestamp)], [], [
          "METRIC",
          "VALUE",
        ]];
        const pick = (path: string[]) => {
          let v: unknown = data;
          for (const k of path) v = (v as Record<string, unknown> | undefined)?.[k];
          return v === undefined ? undefined : String(v);
        };
        const wanted: [string, string[]][] = typeName.includes("v2")
          ? [
            ["memory.usage", ["memory", "usage"]],
            ["memory.usage_limit", ["memory", "usageLimit"]],
            ["memory.swap_usage", ["memory", "swapUsage"]],
            ["cpu.usage_usec", ["cpu", "usageUsec"]],
            ["cpu.user_usec", ["cpu", "userUsec"]],
            ["cpu.system_usec", ["cpu", "systemUsec"]],
            ["pids.current", ["pids", "current"]],
            ["pids.limit", ["pids", "limit"]],
          ]
          : [
            ["memory.usage_in_bytes", ["memory", "usage", "usage"]],
            ["memory.limit_in_bytes", ["memory", "usage", "limit"]],
            ["cpuacct.usage", ["cpu", "usage", "total"]],
            ["pids.current", ["pids", "current"]],
            ["pids.limit", ["pids", "limit"]],
          ];
        for (const [name, path] of wanted) rows.push([name, pick(path) ?? "0"]);
        write(formatTable(rows, { minWidth: 1, tabWidth: 8, padding: 4, padChar: " " }));
        return 0;
      },
    },
    containerAction("pause", "pause an existing container"),
    {
      name: "ps",
      usage: "list processes for container",
      argsUsage: "CONTAINER",
      async run({ args, global }) {
        const id = needId(args);
        const { processes } = await withConnection(
          global,
          (conn) => taskCall(conn, id, () => conn.service(Tasks).listPids({ containerId: id })),
        );
        write(
          formatTable(
            [
              ["PID", "INFO"],
              ...processes.map((p) => [String(p.pid), p.info ? p.info.typeUrl : "-"]),
            ],
            { minWidth: 1, tabWidth: 8, padding: 4, padChar: " " },
            false,
          ),
        );
        return 0;
      },
    },
    containerAction("resume", "resume a paused container"),
    {
      name: "start",
      usage: "start a container that has been created",
      argsUsage: "[flags] CONTAINER",
      flags: {
        ...IO_FLAGS,
        "pid-file": { type: "string", help: "file path to write the task's pid" },
        detach: { type: "boolean", short: "d", help: "detach from the task after it has started" },
      },
      async run({ flags, args, global }) {
        const id = needId(args);
        return await withConnection(global, async (conn) => {
          const c = await getContainer(conn, id);
          const tty = specOf(c)?.process?.terminal === true;
          const detach = flags.detach === true;
          if (tty && !detach && flags["null-io"] !== true && str(flags, "log-uri") === undefined) {
            needTerminal(`container "${id}" (created with -t)`, "start it with -d");
          }
          const { choice, io } = await openIO(conn, flags, global.address, {
            containerId: id,
            execId: "",
            terminal: tty,
            detach,
          });
          const pid = await createTask(conn, c, choice);
          if (str(flags, "pid-file")) {
            await Deno.writeTextFile(str(flags, "pid-file")!, String(pid));
          }
          const tasks = conn.service(Tasks);
          if (detach) {
            await tasks.start({ containerId: id });
            return 0;
          }
          try {
            const status = await runAttached(conn, {
              containerId: id,
              execId: "",
              io,
              tty,
              start: async () => void await tasks.start({ containerId: id }),
              remove: () => tasks.delete({ containerId: id }),
            });
            return status;
          } catch (err) {
            await tasks.delete({ containerId: id }).catch(() => {});
            throw err;
          }
        });
      },
    },
  ],
};

/** Opens the fifos a running task already has (for attach). */
async function openExisting(stdin: string, stdout: string, stderr: string): Promise<FifoIO> {
  return await FifoIO.existing({ stdin, stdout, stderr, terminal: stderr === "" });
}
