/**
 * What the streaming server runs for the CRI's Exec, Attach and
 * PortForward URLs, over the shim's Task API: an exec process with fifos
 * copied to and from the client's streams, an attach to the output taps
 * and stdin fifo the daemon holds for each container, and a port forward
 * through a relay process started in the pod's network namespace
 * (`nsenter --net=<netns> busybox nc 127.0.0.1 <port>`, through src/spawn:
 * no thread of the daemon changes namespace).
 * @module
 */

import { close, mkfifo, openFifo, writeFd } from "../../ffi/mod.ts";
import { failedPrecondition } from "../errdefs/mod.ts";
import type { Spec } from "../oci/mod.ts";
import type { ShimTask } from "../runtime/mod.ts";
import { spawn } from "../spawn/mod.ts";
import type { ForwardConn, StreamingRuntime, StreamIO } from "../streaming/mod.ts";
import type { ContainerIO } from "./io.ts";
import { createExec } from "./exec.ts";
import { readFifo } from "./logs.ts";

/** What the streaming runtime needs of the CRI service. */
export interface StreamTarget {
  /** Container `id`'s running task, its spec and its stdio; FailedPrecondition unless running. */
  runningContainer(id: string): Promise<{ task: ShimTask; spec: Spec; io?: ContainerIO }>;
  /** Pod `id`'s pinned network namespace ("" for host network); NotFound for no such pod. */
  sandboxNetns(id: string): string;
  /** Where exec fifos are made. */
  fifoDir: string;
  /** Whether container `id` was created with stdin_once. */
  stdinOnce(id: string): boolean;
}

/** Copies `from` into the fifo `fd` until it ends; then `closed` runs. */
async function feed(
  from: ReadableStream<Uint8Array>,
  fd: number,
  closed: () => Promise<unknown>,
): Promise<void> {
  try {
    for await (const chunk of from) await writeFd(fd, chunk);
  } catch {
    /* the client or the process went away */
  } finally {
    close(fd);
    await closed().catch(() => {});
  }
}

/** Sends the client's terminal size changes to process `execId` of `t`. */
async function forwardResize(t: ShimTask, execId: string, io: StreamIO): Promise<void> {
  if (!io.tty || io.resize === undefined) return;
  try {
    for await (const size of io.resize) {
      await t.task.resizePty({ id: t.id, execId, width: size.width, height: size.height })
        .catch(() => {});
    }
  } catch { /* the client left */ }
}

/** The {@link StreamingRuntime} over `target`. */
export function streamingRuntime(target: StreamTarget): StreamingRuntime {
  return {
    async exec(containerId, cmd, io) {
      const { task: t, spec } = await target.runningContainer(containerId);
      const execId = crypto.randomUUID().replaceAll("-", "");
      const dir = `${target.fifoDir}/${t.id.slice(0, 12)}-${execId}`;
      await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
      const stop = new AbortController();
      const copies: Promise<void>[] = [];
      const out = (name: string, w: WritableStream<Uint8Array> | undefined) => {
        if (w === undefined) return "";
        const path = `${dir}/${name}`;
        const writer = w.getWriter();
        copies.push(
          readFifo(path, (c) => writer.write(c), stop.signal).finally(() => writer.releaseLock()),
        );
        return path;
      };
      const stdout = out("stdout", io.stdout);
      const stderr = io.tty ? "" : out("stderr", io.stderr);
      let stdin = "";
      let stdinFd: number | undefined;
      if (io.stdin) {
        stdin = `${dir}/stdin`;
        mkfifo(stdin, 0o600);
        stdinFd = openFifo(stdin, "readwrite");
      }
      let created = false;
      try {
        await createExec(t, execId, spec, cmd, { stdin, stdout, stderr, terminal: io.tty });
        created = true;
        const waited = t.task.wait({ id: t.id, execId });
        await t.task.start({ id: t.id, execId });
        if (io.stdin && stdinFd !== undefined) {
          const fd = stdinFd;
          stdinFd = undefined;
          feed(io.stdin, fd, () => t.task.closeIO({ id: t.id, execId, stdin: true }));
        }
        forwardResize(t, execId, io);
        const r = await waited;
        stop.abort();
        await Promise.allSettled(copies);
        return { exitCode: r.exitStatus };
      } finally {
        stop.abort();
        await Promise.allSettled(copies);
        if (stdinFd !== undefined) close(stdinFd);
        if (created) await t.task.delete({ id: t.id, execId }).catch(() => {});
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },

    async attach(containerId, io) {
      const { task: t, io: cio } = await target.runningContainer(containerId);
      if (cio === undefined) {
        throw failedPrecondition(`container ${containerId}: its output is not held by this daemon`);
      }
      const stdout = io.stdout?.getWriter();
      const stderr = io.stderr?.getWriter();
      const untap = cio.attach((stream, chunk) => {
        const w = stream === "stderr" && !io.tty ? stderr : stdout;
        w?.write(chunk).catch(() => {});
      });
      try {
        forwardResize(t, "", io);
        // After the exit, the attach ends only once the output is drained (the
        // daemon stops the copy on the exit): output written just before it still comes.
        const ends: Promise<unknown>[] = [
          t.task.wait({ id: t.id }).then(() => cio.closed).catch(() => {}),
        ];
        if (io.stdin) {
          if (!cio.hasStdin) {
            throw failedPrecondition(
              `container ${containerId} was not created with stdin: nothing to attach it to`,
            );
          }
          const fed = (async () => {
            try {
              for await (const chunk of io.stdin!) await cio.writeStdin(chunk);
            } catch { /* the client left */ }
            // stdin_once: the first attach's end of input is the container's.
            if (target.stdinOnce(containerId)) {
              cio.closeStdin();
              await t.task.closeIO({ id: t.id, stdin: true }).catch(() => {});
            }
          })();
          // The end of input ends an attach only when no output is wanted.
          if (!stdout && !stderr) ends.push(fed);
        }
        for (const w of [stdout, stderr]) if (w) ends.push(w.closed.catch(() => {}));
        await Promise.race(ends);
      } finally {
        untap();
        stdout?.releaseLock();
        stderr?.releaseLock();
      }
    },

    async portForward(podSandboxId, port, conn: ForwardConn) {
      const netns = target.sandboxNetns(podSandboxId);
      if (netns === "") {
        // Host network: the pod's ports are the host's.
        const sock = await Deno.connect({ hostname: "127.0.0.1", port });
        await Promise.allSettled([
          conn.readable.pipeTo(sock.writable),
          sock.readable.pipeTo(conn.writable),
        ]);
        return;
      }
      const child = spawn("nsenter", [
        `--net=${netns}`,
        "busybox",
        "nc",
        "127.0.0.1",
        String(port),
      ], { stdin: "piped", stdout: "piped", stderr: "piped" });
      const errText = new Response(child.stderr).text();
      const kill = () => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      };
      // A client that breaks off (not a half-close) ends the relay too.
      const copies = Promise.allSettled([
        conn.readable.pipeTo(child.stdin).catch(kill),
        child.stdout.pipeTo(conn.writable).catch(kill),
      ]);
      const status = await child.status;
      await copies;
      if (!status.success) {
        const why = (await errText).trim() || `exit status ${status.code}`;
        throw new Error(
          `failed to connect to localhost:${port} inside namespace of pod ${podSandboxId}: ${why}`,
        );
      }
    },
  };
}
