/**
 * `berth run`: create a container from an image, start its task, and (unless -d) wait for it.
 * @module
 */
import { Code } from "../../errdefs/mod.ts";
import { Tasks } from "../../gen/containerd/services/tasks/v1/tasks_pb.ts";
import { type CommandSpec, str, usageError } from "../cli.ts";
import { CONTAINER_FLAGS, createContainer } from "../container.ts";
import { withConnection } from "../connection.ts";
import { runAttached } from "../foreground.ts";
import { needTerminal } from "../stdio.ts";
import { createTask, openIO, tasksError } from "../task.ts";
import { deleteContainer } from "./containers.ts";

/** The `run` command. */
export const command: CommandSpec = {
  name: "run",
  usage: "run a container",
  argsUsage: "[flags] Image|RootFS ID [COMMAND] [ARG...]",
  passthrough: 2,
  flags: {
    ...CONTAINER_FLAGS,
    rm: { type: "boolean", help: "remove the container after running (not with -d)" },
    "null-io": { type: "boolean", help: "send all IO to /dev/null" },
    "log-uri": { type: "string", help: "log uri (file:///path, binary:///path?args)" },
    detach: { type: "boolean", short: "d", help: "detach from the task after it has started" },
    "fifo-dir": { type: "string", help: "directory for the stdio fifos" },
    "sig-proxy": { type: "boolean", help: "forward signals to the task (the default without -t)" },
  },
  async run({ flags, args, global }) {
    const [ref, id, ...cmd] = args;
    if (!ref) throw usageError("image ref must be provided");
    if (!id) throw usageError("container id must be provided");
    const detach = flags.detach === true;
    if (detach && flags.rm) throw usageError("--rm and --detach cannot be used together");
    const tty = flags.tty === true;
    const localIO = flags["null-io"] !== true && str(flags, "log-uri") === undefined;
    if (tty && !detach && localIO) needTerminal("-t");
    return await withConnection(global, async (conn) => {
      const container = await createContainer(conn, flags, ref, id, cmd);
      let status: number;
      try {
        const { choice, io } = await openIO(conn, flags, global.address, {
          containerId: id,
          execId: "",
          terminal: tty,
          detach,
        });
        const pid = await createTask(conn, container, choice);
        const pidFile = str(flags, "pid-file");
        if (pidFile) await Deno.writeTextFile(pidFile, String(pid));
        if (detach) {
          // The task keeps its fifos; `tasks attach` reopens them.
          await conn.service(Tasks).start({ containerId: id }).catch((e) => {
            throw tasksError(e, "");
          });
          return 0;
        }
        status = await runAttached(conn, {
          containerId: id,
          execId: "",
          io,
          tty,
          start: async () => {
            await conn.service(Tasks).start({ containerId: id });
          },
          remove: () => conn.service(Tasks).delete({ containerId: id }),
        });
      } catch (err) {
        // Leave nothing half-made behind a failed foreground run.
        if (!detach) {
          await conn.service(Tasks).delete({ containerId: id }).catch(() => {});
          if (flags.rm) await deleteContainer(conn, id, false).catch(() => {});
        }
        throw err;
      }
      if (flags.rm) {
        await deleteContainer(conn, id, false).catch((err) => {
          if ((err as { code?: Code }).code !== Code.NotFound) throw err;
        });
      }
      return status;
    });
  },
};
