/**
 * The pod networking the CRI plugin drives: a pod's network namespace is
 * attached (ADD) to the loopback network (`lo` up) and to the network of
 * the configuration directory (`eth0`), and detached (DEL) from exactly
 * what was attached, as saved on disk. See {@link CniManager}.
 *
 * @module
 */

import { BerthError, Code, failedPrecondition, invalidArgument } from "../errdefs/mod.ts";
import { validateIdentifier } from "../identifiers/mod.ts";
import { log } from "../log/mod.ts";
import { netnsExists } from "../netns/mod.ts";
import { loadNetwork, type NetworkList, NotInitializedError } from "./config.ts";
import { addList, checkList, delList, type ExecOptions, type Invocation } from "./exec.ts";
import { type InterfaceInfo, type IpConfig, summarize } from "./result.ts";
import { type PodNetworkState, readState, removeState, writeState } from "./state.ts";

/** Where berth looks for plugins when the caller names no directory. */
export const DEFAULT_BIN_DIRS: readonly string[] = ["/usr/lib/cni", "/opt/cni/bin"];

/** The interface name of the pod's side of the configured network. */
const POD_IFNAME = "eth0";

/**
 * The loopback network every pod is attached to first, as containerd does
 * (which says 0.3.1; 1.0.0 here gives DEL the saved result and allows CHECK).
 */
const LOOPBACK: NetworkList = {
  name: "cni-loopback",
  cniVersion: "1.0.0",
  disableCheck: false,
  plugins: [{ type: "loopback" }],
  source: "",
};

/** One port of the host forwarded to the pod (the `portMappings` capability). */
export interface PortMapping {
  hostPort: number;
  containerPort: number;
  protocol: "tcp" | "udp" | "sctp";
  hostIP?: string;
}

/** Traffic shaping (the `bandwidth` capability), in bits per second and bits. */
export interface Bandwidth {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** DNS settings for plugins that take them (the `dns` capability). */
export interface Dns {
  servers?: string[];
  searches?: string[];
  options?: string[];
}

/** What {@link CniManager.setup} needs to know of the pod. */
export interface SetupOptions {
  podName: string;
  podNamespace: string;
  /** The pod's UID, passed as K8S_POD_UID when given. */
  podUid?: string;
  /** Mappings with hostPort 0 are left out, as containerd does. */
  portMappings?: PortMapping[];
  bandwidth?: Bandwidth;
  dns?: Dns;
}

/** What a pod got from its network. */
export interface SetupResult {
  /** The addresses of the configured network (not loopback's). */
  ips: IpConfig[];
  interfaces: InterfaceInfo[];
  /** The configured network's final result, as the last plugin printed it. */
  raw: unknown;
}

/** How a {@link CniManager} is set up. */
export interface CniManagerOptions {
  /** Directories searched in order for plugin binaries (default {@link DEFAULT_BIN_DIRS}). */
  binDirs?: string[];
  /** The network configuration directory (e.g. /etc/cni/net.d). */
  confDir: string;
  /** Where each pod's attachment is saved (e.g. `<state>/cni`). */
  stateDir: string;
  /** Attach pods to the loopback network too (default true). */
  loopback?: boolean;
  /** Milliseconds one plugin run may take (default 60000). */
  timeoutMs?: number;
}

/**
 * CNI for pods. `setup` attaches a pod's netns (loopback, then the network
 * of `confDir` as it is at that moment) and saves what it used; `teardown`
 * replays that saved state with DEL, even from a new instance after a crash
 * and whatever `confDir` holds then, and is idempotent; `status` says
 * whether there is a usable network configuration, re-reading `confDir` on
 * each call so that one added later is found.
 *
 * @example
 * ```ts
 * const cni = new CniManager({ confDir: "/etc/cni/net.d", stateDir: "/var/lib/berth/cni" });
 * const { ips } = await cni.setup(podId, netnsPath, { podName: "web", podNamespace: "default" });
 * await cni.teardown(podId, netnsPath);
 * ```
 */
export class CniManager {
  readonly #exec: ExecOptions;
  readonly #confDir: string;
  readonly #stateDir: string;
  readonly #loopback: boolean;
  // One operation per pod at a time: setup and teardown of one id never interleave.
  readonly #locks = new Map<string, Promise<unknown>>();

  /** Makes a manager; nothing is read until the first call. */
  constructor(opts: CniManagerOptions) {
    if (!opts.confDir) throw invalidArgument("cni: confDir must be given");
    if (!opts.stateDir) throw invalidArgument("cni: stateDir must be given");
    const binDirs = opts.binDirs?.length ? [...opts.binDirs] : [...DEFAULT_BIN_DIRS];
    this.#exec = { binDirs, timeoutMs: opts.timeoutMs ?? 60_000 };
    this.#confDir = opts.confDir;
    this.#stateDir = opts.stateDir;
    this.#loopback = opts.loopback ?? true;
  }

  /**
   * Ready when `confDir` holds a valid network configuration; otherwise
   * `reason` says why (containerd's "cni plugin not initialized: ..." when
   * there is none).
   */
  async status(): Promise<{ ready: boolean; reason?: string }> {
    try {
      await loadNetwork(this.#confDir);
      return { ready: true };
    } catch (err) {
      if (err instanceof NotInitializedError || err instanceof BerthError) {
        return { ready: false, reason: err.message };
      }
      return { ready: false, reason: `cni config load failed: ${(err as Error).message}` };
    }
  }

  /**
   * Attaches pod `id`'s netns at `netnsPath`: loopback, then the configured
   * network as `eth0`. On failure whatever was attached is detached again
   * and nothing is saved. FailedPrecondition when there is no network
   * configuration; AlreadyExists when `id` is attached already.
   */
  setup(id: string, netnsPath: string, opts: SetupOptions): Promise<SetupResult> {
    validateIdentifier(id, "pod sandbox id");
    return this.#serialized(id, () => this.#setup(id, netnsPath, opts));
  }

  /**
   * Detaches pod `id` (DEL, in reverse, with what ADD used and returned)
   * and forgets it. Idempotent: nothing saved means nothing to do, and a
   * netns that is gone (or `netnsPath` undefined) gives plugins CNI_NETNS="".
   * When a plugin fails the state stays, so a retry can finish the job.
   */
  teardown(id: string, netnsPath: string | undefined): Promise<void> {
    validateIdentifier(id, "pod sandbox id");
    return this.#serialized(id, () => this.#teardown(id, netnsPath));
  }

  /**
   * CHECK of pod `id`'s attachments against what ADD returned. NotFound when
   * `id` is not attached; FailedPrecondition when its netns is gone.
   */
  check(id: string, netnsPath: string): Promise<void> {
    validateIdentifier(id, "pod sandbox id");
    return this.#serialized(id, async () => {
      const state = await readState(this.#stateDir, id);
      if (!state) {
        throw new BerthError(Code.NotFound, `network of pod sandbox ${id}: not found`);
      }
      if (!await netnsExists(netnsPath)) {
        throw failedPrecondition(`network namespace ${netnsPath} of pod sandbox ${id} is gone`);
      }
      for (const a of state.attachments) {
        const inv = this.#invocation(state, netnsPath, a.ifname);
        await checkList(a.network, inv, a.result, this.#exec);
      }
    });
  }

  async #setup(id: string, netnsPath: string, opts: SetupOptions): Promise<SetupResult> {
    if (!opts.podName || !opts.podNamespace) {
      throw invalidArgument("cni setup: podName and podNamespace must be given");
    }
    if (await readState(this.#stateDir, id)) {
      throw new BerthError(
        Code.AlreadyExists,
        `network of pod sandbox ${id} is set up already; tear it down first`,
      );
    }
    if (!await netnsExists(netnsPath)) {
      throw invalidArgument(`${netnsPath} is not a network namespace`);
    }
    const network = await loadNetwork(this.#confDir);
    const args: [string, string][] = [
      ["K8S_POD_NAMESPACE", opts.podNamespace],
      ["K8S_POD_NAME", opts.podName],
      ["K8S_POD_INFRA_CONTAINER_ID", id],
    ];
    if (opts.podUid) args.push(["K8S_POD_UID", opts.podUid]);
    args.push(["IgnoreUnknown", "1"]);
    for (const [k, v] of args) {
      // CNI_ARGS is `K=V;K=V`: a value with ';' or '=' would forge another key.
      if (/[;=]/.test(v)) {
        throw invalidArgument(`cni setup: ${k} ${JSON.stringify(v)} has ';' or '='`);
      }
    }
    const state: PodNetworkState = {
      version: 1,
      containerId: id,
      netns: netnsPath,
      args,
      capabilityArgs: capabilityArgs(opts),
      attachments: [
        ...(this.#loopback ? [{ network: LOOPBACK, ifname: "lo" }] : []),
        { network, ifname: POD_IFNAME },
      ],
    };
    // Saved before any plugin runs: a crash in the middle leaves what DEL needs.
    await writeState(this.#stateDir, id, state);
    try {
      for (const a of state.attachments) {
        a.result = await addList(
          a.network,
          this.#invocation(state, netnsPath, a.ifname),
          this.#exec,
        );
        await writeState(this.#stateDir, id, state); // DEL then gets this result too
      }
    } catch (err) {
      // Undo what ran; the state goes either way: a config that made ADD fail
      // usually makes DEL fail too, and replaying it would fail forever.
      await this.#teardown(id, netnsPath).catch((e) =>
        log.warn("cni: cleanup after a failed setup failed", { id, error: String(e) })
      );
      await removeState(this.#stateDir, id);
      throw err;
    }
    const main = state.attachments[state.attachments.length - 1];
    return { ...summarize(main.result), raw: main.result };
  }

  async #teardown(id: string, netnsPath: string | undefined): Promise<void> {
    const state = await readState(this.#stateDir, id);
    if (!state) return;
    const path = netnsPath || state.netns;
    const netns = path && await netnsExists(path) ? path : "";
    let first: unknown = undefined;
    for (const a of [...state.attachments].reverse()) {
      try {
        await delList(a.network, this.#invocation(state, netns, a.ifname), a.result, this.#exec);
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== undefined) throw first;
    await removeState(this.#stateDir, id);
  }

  #invocation(state: PodNetworkState, netns: string, ifname: string): Invocation {
    return {
      containerId: state.containerId,
      netns,
      ifname,
      args: state.args,
      capabilityArgs: state.capabilityArgs,
    };
  }

  async #serialized<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#locks.get(id) ?? Promise.resolve();
    const mine = before.catch(() => {}).then(fn);
    this.#locks.set(id, mine);
    try {
      return await mine;
    } finally {
      if (this.#locks.get(id) === mine) this.#locks.delete(id);
    }
  }
}

function capabilityArgs(opts: SetupOptions): Record<string, unknown> {
  const caps: Record<string, unknown> = {};
  const ports = (opts.portMappings ?? []).filter((p) => p.hostPort > 0).map((p) => {
    for (const [k, v] of [["hostPort", p.hostPort], ["containerPort", p.containerPort]] as const) {
      if (!Number.isInteger(v) || v < 1 || v > 65535) {
        throw invalidArgument(`port mapping: ${k} ${v} is not a port number`);
      }
    }
    const protocol = (p.protocol ?? "tcp").toLowerCase();
    if (!["tcp", "udp", "sctp"].includes(protocol)) {
      throw invalidArgument(`port mapping: unknown protocol ${JSON.stringify(p.protocol)}`);
    }
    return {
      hostPort: p.hostPort,
      containerPort: p.containerPort,
      protocol,
      ...(p.hostIP ? { hostIP: p.hostIP } : {}),
    };
  });
  if (ports.length > 0) caps.portMappings = ports;
  if (opts.bandwidth && Object.keys(opts.bandwidth).length > 0) caps.bandwidth = opts.bandwidth;
  if (opts.dns && Object.keys(opts.dns).length > 0) caps.dns = opts.dns;
  return caps;
}
