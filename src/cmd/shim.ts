/**
 * Entry of `berth shim` / `containerd-shim-berth-v2`: parses containerd's
 * flags and runs the action. Each action's code is imported only when
 * chosen, so `start` (on the path of every container start) loads neither
 * protobuf nor the ttrpc server.
 * @module
 */
import { parseShimFlags } from "../shim/flags.ts";
import { VERSION } from "../version.ts";

/**
 * `serve` hands back what loading it left free in malloc's arenas (see
 * releaseFreeMemory), once start-up is over and off the path of the first
 * request: a shim lives as long as its containers.
 */
function releaseStartupGarbage(): void {
  const timer = setTimeout(() => {
    import("../../ffi/mod.ts").then((ffi) => ffi.releaseFreeMemory()).catch(() => {});
  }, 1000);
  Deno.unrefTimer(timer);
}

/** Runs the shim mode; returns the process exit status. */
export async function shimMain(args: string[]): Promise<number> {
  let flags;
  try {
    flags = parseShimFlags(args);
  } catch (err) {
    console.error(`berth shim: ${(err as Error).message}`);
    return 2;
  }
  try {
    switch (flags.action) {
      case "start": {
        const { startShim } = await import("../shim/start.ts");
        const address = await startShim(flags);
        await Deno.stdout.write(new TextEncoder().encode(address));
        return 0;
      }
      case "delete": {
        const { deleteAfterDeadShim } = await import("../shim/delete.ts");
        const out = await deleteAfterDeadShim(flags);
        await Deno.stdout.write(out);
        return 0;
      }
      case "serve": {
        const [{ serveShim }, { spareStarter }] = await Promise.all([
          import("../shim/serve.ts"),
          import("../shim/spare.ts"),
        ]);
        releaseStartupGarbage();
        return await serveShim(flags, { started: spareStarter(flags.socket) });
      }
      case "spare": {
        const { runSpare } = await import("../shim/spare.ts");
        return await runSpare(flags.socket);
      }
      case "version":
        console.log(`containerd-shim-berth-v2:\n  Version:  ${VERSION}\n`);
        return 0;
      default:
        console.error(
          `berth shim: unknown action "${flags.action}" (want start, delete, serve or spare, after -namespace/-address/-id flags)`,
        );
        return 2;
    }
  } catch (err) {
    // containerd shows this text (with stdout) when an action fails.
    await Deno.stderr.write(
      new TextEncoder().encode(`berth shim ${flags.action}: ${(err as Error).message}\n`),
    ).catch(() => {});
    return 1;
  }
}
