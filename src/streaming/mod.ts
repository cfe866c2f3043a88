/**
 * The CRI streaming server: the URLs that the CRI's Exec, Attach and
 * PortForward return, and the protocols clients speak on them (SPDY/3.1
 * with the kubelet's remotecommand and port-forward channels, and the
 * websocket channel protocols for exec and attach). The CRI plugin makes a
 * {@link StreamServer} over its {@link StreamingRuntime} and asks it for
 * URLs.
 *
 * @example
 * ```ts
 * const server = new StreamServer({ runtime });
 * server.start();
 * const url = server.getExec({ containerId: "c1", cmd: ["sh"], tty: true, stdin: true, stdout: true, stderr: false });
 * // ... answer ExecResponse { url }; later:
 * await server.close();
 * ```
 * @module
 */

export {
  type AttachParams,
  type ExecParams,
  type PortForwardParams,
  StreamServer,
  type StreamServerOptions,
} from "./server.ts";
export type {
  ForwardConn,
  StreamingRuntime,
  StreamIO,
  StreamOptions,
  TerminalSize,
} from "./types.ts";
