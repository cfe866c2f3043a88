/**
 * What the streaming server asks of the runtime behind it (the CRI plugin
 * implements {@link StreamingRuntime}), and the stream ends it hands over.
 * @module
 */

/** A terminal size change from the client. */
export interface TerminalSize {
  width: number;
  height: number;
}

/**
 * The client's streams for one exec or attach. Only the streams the CRI
 * request asked for are present. The server closes stdout and stderr after
 * the runtime's call returns if the runtime left them open.
 */
export interface StreamIO {
  /** The client's input; ends when the client half-closes it. */
  stdin?: ReadableStream<Uint8Array>;
  stdout?: WritableStream<Uint8Array>;
  /** Never present with `tty`: a terminal has one output. */
  stderr?: WritableStream<Uint8Array>;
  tty: boolean;
  /** Size changes (the first is the client's initial size); only with `tty`. */
  resize?: AsyncIterable<TerminalSize>;
}

/** Both directions of one forwarded connection. */
export interface ForwardConn {
  /** Bytes from the client; ends when the client half-closes. */
  readable: ReadableStream<Uint8Array>;
  /** Bytes to the client; closing it half-closes towards the client. */
  writable: WritableStream<Uint8Array>;
}

/** The runtime operations behind the streaming URLs. */
export interface StreamingRuntime {
  /**
   * Runs `cmd` in the container with `io`; resolves with its exit code once
   * it has exited and its output is written. A rejection reaches the client
   * as an internal error.
   */
  exec(containerId: string, cmd: string[], io: StreamIO): Promise<{ exitCode: number }>;
  /** Attaches `io` to the container's main process until it exits or the client leaves. */
  attach(containerId: string, io: StreamIO): Promise<void>;
  /**
   * Connects `conn` to `port` inside the sandbox's network namespace and
   * copies both ways until both directions end; a rejection's message goes
   * to the client's error stream.
   */
  portForward(podSandboxId: string, port: number, conn: ForwardConn): Promise<void>;
}

/** Which streams a client asked for (from the CRI request). */
export interface StreamOptions {
  stdin: boolean;
  stdout: boolean;
  stderr: boolean;
  tty: boolean;
}
