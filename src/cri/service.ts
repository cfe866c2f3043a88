/**
 * runtime.v1.RuntimeService over the daemon's own stores and task
 * manager, in the k8s.io namespace, following containerd's CRI plugin:
 * a pod is a pause container (its task holds the pod's namespaces), each
 * of its containers a task in the same shim group, and the CRI state is
 * kept on the container records so a restarted daemon finds it again.
 * @module
 */

import { create, toJson } from "@bufbuild/protobuf";
import { signalNumber } from "../../ffi/mod.ts";
import { type Config, resolveRuntime } from "../config/mod.ts";
import {
  BerthError,
  Code,
  failedPrecondition,
  invalidArgument,
  isCode,
  notFound,
  unavailable,
} from "../errdefs/mod.ts";
import {
  ContainerConfigSchema,
  ContainerState,
  ContainerStatsSchema,
  ContainerStatusSchema,
  PodSandboxConfigSchema,
  PodSandboxState,
  PodSandboxStatsSchema,
  RuntimeService,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import type {
  ContainerConfig,
  ContainerStatus,
  PodSandboxConfig,
} from "../gen/k8s/cri/runtime/v1/api_pb.ts";
import { Status as TaskStatus } from "../gen/containerd/types/task_pb.ts";
import type { ImageBackend } from "../images/mod.ts";
import { LABEL_GC_EXPIRE } from "../labels/mod.ts";
import { log } from "../log/mod.ts";
import type { Metadata, NamespacedSnapshotter } from "../metadata/mod.ts";
import { encodeSpec, type Spec, SPEC_TYPE_URL } from "../oci/mod.ts";
import { untilSignalReaches } from "../procfs/mod.ts";
import type { ShimTask, TaskManager } from "../runtime/mod.ts";
import { type RPCService, rpcService } from "../services/mod.ts";
import { VERSION } from "../version.ts";
import type { CriConfig } from "./config.ts";
import { type ExecResult, execSync } from "./exec.ts";
import { resolveImage } from "./image.ts";
import { ContainerIO, type StdioPaths } from "./io.ts";
import { CniManager } from "../cni/mod.ts";
import { createNetns, removeNetns } from "../netns/mod.ts";
import type { StreamServer } from "../streaming/mod.ts";
import type { StreamTarget } from "./streaming.ts";
import {
  containerSpec,
  containerUser,
  CRI_NAMESPACE,
  type ImageConfig,
  sandboxSpec,
} from "./spec.ts";
import { readRootfsFile, resolveUser } from "./user.ts";
import { loadSeccomp } from "./seccomp.ts";
import { type CriContainer, Index, newRunStatus, nowNanos, type Sandbox } from "./store.ts";
import {
  CONTAINER_EXTENSION,
  containerExtension,
  containerFromExtension,
  decodeRunStatus,
  encodeRunStatus,
  SANDBOX_EXTENSION,
  sandboxExtension,
  sandboxFromExtension,
} from "./store.ts";
import { mountShm, unmountShm } from "./shm.ts";
import { criUsage, sumUsage, type Usage, usageOf } from "./stats.ts";

/** What the service works over. */
export interface CriDeps {
  cri: CriConfig;
  /** The daemon's whole config (the runtimes table). */
  config: Config;
  md: Metadata;
  tasks: TaskManager;
  /** The image backend of the k8s.io namespace. */
  images: ImageBackend;
  /** The snapshotter containers' root file systems come from. */
  snapshotter: NamespacedSnapshotter;
  /** Where that snapshotter keeps its data (the writable layers' file system). */
  snapshotRoot: string;
  /** Pod networking: CNI ADD/DEL/CHECK over conf_dir's network. */
  cni: CniManager;
  /** Pulls an image into k8s.io (the ImageService's PullImage), for a sandbox image not there. */
  pull: (ref: string) => Promise<void>;
  /** The streaming server behind Exec, Attach and PortForward (set once it listens). */
  streams?: StreamServer;
  /** The plugin's directories: persistent (`<root>/io.containerd.grpc.v1.cri`) and volatile. */
  root: string;
  state: string;
}

const NS = CRI_NAMESPACE;
/** Label containerd puts on the records it makes, saying which kind each is. */
const KIND_LABEL = "io.cri-containerd.kind";
/** Output ExecSync keeps per stream (containerd's cap). */
const EXEC_OUTPUT_CAP = 16 << 20;
/** Longest a stop waits for a just-started container's init to handle the stop signal. */
const STOP_HANDLER_WAIT_MS = 2000;

function newId(): string {
  const b = crypto.getRandomValues(new Uint8Array(32));
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

function sandboxName(c: PodSandboxConfig): string {
  const m = c.metadata!;
  return [m.name, m.namespace, m.uid, String(m.attempt)].join("_");
}

function containerName(c: ContainerConfig, s: PodSandboxConfig): string {
  const m = c.metadata!;
  const p = s.metadata!;
  return [m.name, p.name, p.namespace, p.uid, String(m.attempt)].join("_");
}

function matchesLabels(labels: Record<string, string>, selector: Record<string, string>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/** The one service object; {@link RuntimeServiceImpl.recover} reloads what a daemon before made. */
export class RuntimeServiceImpl {
  readonly sandboxes = new Index<Sandbox>("sandbox");
  readonly containers = new Index<CriContainer>("container");
  /** Open log files and the copies into them, by container id. */
  readonly #io = new Map<string, ContainerIO>();
  /** Background exit watchers, by task id. */
  readonly #watching = new Set<string>();
  #podCidr = "";
  /** Leases of operations under way, by their cleanup list. */
  readonly #leases = new Map<unknown[], string>();

  constructor(readonly deps: CriDeps) {}

  /** The RPCService the daemon serves. */
  rpc(): RPCService {
    return rpcService(RuntimeService, {
      version: () => ({
        version: "0.1.0",
        runtimeName: "berth",
        runtimeVersion: VERSION,
        runtimeApiVersion: "v1",
      }),
      status: (req) => this.status(req.verbose),
      updateRuntimeConfig: (req) => {
        this.#podCidr = req.runtimeConfig?.networkConfig?.podCidr ?? "";
        return {};
      },
      runPodSandbox: async (req) => ({
        podSandboxId: await this.runPodSandbox(req.config, req.runtimeHandler),
      }),
      stopPodSandbox: async (req) => {
        await this.stopPodSandbox(req.podSandboxId);
        return {};
      },
      removePodSandbox: async (req) => {
        await this.removePodSandbox(req.podSandboxId);
        return {};
      },
      podSandboxStatus: (req) => this.podSandboxStatus(req.podSandboxId, req.verbose),
      listPodSandbox: (req) => {
        const f = req.filter;
        const items = this.sandboxes.all().filter((s) => {
          if (f?.id && !s.id.startsWith(f.id)) return false;
          if (f?.state && this.#sandboxState(s) !== f.state.state) return false;
          return matchesLabels(s.config.labels, f?.labelSelector ?? {});
        });
        return {
          items: items.map((s) => ({
            id: s.id,
            metadata: s.config.metadata,
            state: this.#sandboxState(s),
            createdAt: s.createdAt,
            labels: s.config.labels,
            annotations: s.config.annotations,
            runtimeHandler: s.runtimeHandler,
          })),
        };
      },
      createContainer: async (req) => ({
        containerId: await this.createContainer(req.podSandboxId, req.config, req.sandboxConfig),
      }),
      startContainer: async (req) => {
        await this.startContainer(req.containerId);
        return {};
      },
      stopContainer: async (req) => {
        await this.stopContainer(req.containerId, Number(req.timeout));
        return {};
      },
      removeContainer: async (req) => {
        await this.removeContainer(req.containerId);
        return {};
      },
      listContainers: async (req) => {
        const f = req.filter;
        const out = [];
        for (const c of this.containers.all()) {
          if (f?.id && !c.id.startsWith(f.id)) continue;
          if (f?.podSandboxId && !c.sandboxId.startsWith(f.podSandboxId)) continue;
          if (!matchesLabels(c.config.labels, f?.labelSelector ?? {})) continue;
          const state = await this.#containerState(c);
          if (f?.state && state !== f.state.state) continue;
          out.push({
            id: c.id,
            podSandboxId: c.sandboxId,
            metadata: c.config.metadata,
            image: c.config.image,
            imageRef: c.imageId,
            state,
            createdAt: c.createdAt,
            labels: c.config.labels,
            annotations: c.config.annotations,
          });
        }
        return { containers: out };
      },
      containerStatus: async (req) => {
        const c = this.containers.get(req.containerId);
        const status = await this.#containerStatus(c);
        const info: Record<string, string> = {};
        if (req.verbose) {
          info.info = JSON.stringify({
            sandboxID: c.sandboxId,
            pid: c.status.pid,
            removing: false,
            snapshotKey: c.id,
            snapshotter: this.deps.cri.snapshotter,
            config: toJson(ContainerConfigSchema, c.config),
            runtimeSpec: await this.#specOf(c.id).catch(() => undefined),
          });
        }
        return { status, info };
      },
      updateContainerResources: async (req) => {
        const c = this.containers.get(req.containerId);
        const t = this.#task(c.id);
        if (t === undefined) {
          throw failedPrecondition(`container ${c.id} is not running: nothing to update`);
        }
        const r = req.linux;
        if (r === undefined) return {};
        const resources = {
          cpu: {
            ...(r.cpuShares > 0n ? { shares: Number(r.cpuShares) } : {}),
            ...(r.cpuQuota > 0n ? { quota: Number(r.cpuQuota) } : {}),
            ...(r.cpuPeriod > 0n ? { period: Number(r.cpuPeriod) } : {}),
            ...(r.cpusetCpus ? { cpus: r.cpusetCpus } : {}),
            ...(r.cpusetMems ? { mems: r.cpusetMems } : {}),
          },
          ...(r.memoryLimitInBytes > 0n ? { memory: { limit: Number(r.memoryLimitInBytes) } } : {}),
        };
        await t.task.update({
          id: c.id,
          resources: {
            $typeName: "google.protobuf.Any",
            typeUrl: "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
            value: new TextEncoder().encode(JSON.stringify(resources)),
          },
          annotations: {},
        });
        if (c.config.linux) c.config.linux.resources = r;
        this.#persistContainer(c);
        return {};
      },
      reopenContainerLog: async (req) => {
        const c = this.containers.get(req.containerId);
        const io = this.#io.get(c.id);
        if (
          io === undefined || (await this.#containerState(c)) !== ContainerState.CONTAINER_RUNNING
        ) {
          throw failedPrecondition(`container ${c.id} is not running`);
        }
        await io.log.reopen();
        return {};
      },
      containerStats: async (req) => ({
        stats: await this.#containerStats(this.containers.get(req.containerId)),
      }),
      listContainerStats: async (req) => {
        const f = req.filter;
        const chosen = this.containers.all().filter((c) =>
          (!f?.id || c.id.startsWith(f.id)) &&
          (!f?.podSandboxId || c.sandboxId.startsWith(f.podSandboxId)) &&
          matchesLabels(c.config.labels, f?.labelSelector ?? {})
        );
        return { stats: await Promise.all(chosen.map((c) => this.#containerStats(c))) };
      },
      podSandboxStats: async (req) => ({
        stats: await this.#podStats(this.sandboxes.get(req.podSandboxId)),
      }),
      listPodSandboxStats: async (req) => {
        const f = req.filter;
        const chosen = this.sandboxes.all().filter((s) =>
          (!f?.id || s.id.startsWith(f.id)) &&
          matchesLabels(s.config.labels, f?.labelSelector ?? {})
        );
        return { stats: await Promise.all(chosen.map((s) => this.#podStats(s))) };
      },
      exec: async (req) => {
        const c = this.containers.get(req.containerId);
        if ((await this.#containerState(c)) !== ContainerState.CONTAINER_RUNNING) {
          throw failedPrecondition(`container ${c.id} is not running`);
        }
        return { url: this.#streams().getExec({ ...req, containerId: c.id }) };
      },
      attach: async (req) => {
        const c = this.containers.get(req.containerId);
        if ((await this.#containerState(c)) !== ContainerState.CONTAINER_RUNNING) {
          throw failedPrecondition(`container ${c.id} is not running`);
        }
        return { url: this.#streams().getAttach({ ...req, containerId: c.id }) };
      },
      portForward: (req) => {
        const s = this.sandboxes.get(req.podSandboxId);
        if (!s.ready) throw failedPrecondition(`sandbox ${s.id} is not running`);
        return { url: this.#streams().getPortForward({ ...req, podSandboxId: s.id }) };
      },
      execSync: async (req) => {
        const c = this.containers.get(req.containerId);
        const t = this.#task(c.id);
        if (
          t === undefined || (await this.#containerState(c)) !== ContainerState.CONTAINER_RUNNING
        ) {
          throw failedPrecondition(`container ${c.id} is not running`);
        }
        if (req.cmd.length === 0) throw invalidArgument("exec: cmd is required");
        const spec = await this.#specOf(c.id);
        const r: ExecResult = await execSync(t, {
          spec,
          cmd: req.cmd,
          timeoutMs: Number(req.timeout) * 1000,
          fifoDir: `${this.deps.state}/exec`,
          outputCap: EXEC_OUTPUT_CAP,
        });
        return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode };
      },
    });
  }

  /** Runtime and network conditions, as the kubelet polls them. */
  async status(verbose: boolean) {
    const net = await this.deps.cni.status();
    const network = {
      type: "NetworkReady",
      status: net.ready,
      reason: net.ready ? "" : "NetworkPluginNotReady",
      message: net.ready ? "" : `Network plugin returns error: ${net.reason ?? "not ready"}`,
    };
    const info: Record<string, string> = {};
    if (verbose) {
      info.config = JSON.stringify({ ...this.deps.cri, podCidr: this.#podCidr });
    }
    return {
      status: {
        conditions: [{ type: "RuntimeReady", status: true, reason: "", message: "" }, network],
      },
      info,
    };
  }

  #task(id: string): ShimTask | undefined {
    try {
      return this.deps.tasks.get(NS, id);
    } catch {
      return undefined;
    }
  }

  async #taskStatus(id: string): Promise<{ status: TaskStatus; exitStatus: number; pid: number }> {
    const t = this.#task(id);
    if (t === undefined) return { status: TaskStatus.UNKNOWN, exitStatus: 0, pid: 0 };
    try {
      const s = await t.task.state({ id }, { timeoutMs: 5000 });
      return { status: s.status, exitStatus: s.exitStatus, pid: s.pid };
    } catch {
      return { status: TaskStatus.UNKNOWN, exitStatus: 0, pid: 0 };
    }
  }

  #specOf(id: string): Promise<Spec> {
    return Promise.resolve().then(() => {
      const rec = this.deps.md.containers.get(NS, id);
      return JSON.parse(new TextDecoder().decode(rec.spec.value)) as Spec;
    });
  }

  #sandboxState(s: Sandbox): PodSandboxState {
    return s.ready ? PodSandboxState.SANDBOX_READY : PodSandboxState.SANDBOX_NOTREADY;
  }

  #sandboxDir(id: string): string {
    return `${this.deps.root}/sandboxes/${id}`;
  }

  #sandboxStateDir(id: string): string {
    return `${this.deps.state}/sandboxes/${id}`;
  }

  /** Watches task `id` (an exec-less init) and calls `exited` once with its status. */
  #watchExit(id: string, exited: (code: number, at: bigint) => void): void {
    if (this.#watching.has(id)) return;
    const t = this.#task(id);
    if (t === undefined) return;
    this.#watching.add(id);
    t.task.wait({ id }).then(
      (r) => {
        const at = r.exitedAt
          ? BigInt(r.exitedAt.seconds) * 1_000_000_000n + BigInt(r.exitedAt.nanos)
          : nowNanos();
        exited(r.exitStatus, at);
      },
      (err) => {
        log.warn("cri: lost the task's exit", { id, error: String(err) });
        exited(255, nowNanos());
      },
    ).finally(() => this.#watching.delete(id));
  }

  /**
   * A lease holding a new snapshot until the container record that
   * references it exists (a collection in between would take it); it ends
   * with the operation, through `cleanups`' owner (see {@link #endLeases}).
   */
  #lease(cleanups: unknown[]): string {
    const id = `berth-cri-${crypto.randomUUID()}`;
    const expire = new Date(Date.now() + 3600_000).toISOString();
    this.deps.md.leases.create(NS, id, { [LABEL_GC_EXPIRE]: expire });
    this.#leases.set(cleanups, id);
    return id;
  }

  /** Ends the lease {@link #lease} took for `cleanups`' operation. */
  #endLease(cleanups: unknown[]): void {
    const id = this.#leases.get(cleanups);
    if (id === undefined) return;
    this.#leases.delete(cleanups);
    try {
      this.deps.md.leases.delete(NS, id);
    } catch (err) {
      log.warn("cri: cannot delete a lease", { id, error: String(err) });
    }
  }

  /** The sandbox image, pulled first when it is not in k8s.io (as containerd does). */
  async #sandboxImage() {
    const ref = this.deps.cri.sandboxImage;
    const find = () => resolveImage(this.deps.images, ref, this.deps.cri.snapshotter);
    try {
      return await find();
    } catch (err) {
      if (!isCode(err, Code.NotFound)) throw err;
    }
    try {
      await this.deps.pull(ref);
    } catch (err) {
      const e = err as { code?: Code; message: string };
      throw new BerthError(
        e.code ?? Code.Unknown,
        `failed to get sandbox image ${JSON.stringify(ref)}: ${e.message}`,
      );
    }
    return await find();
  }

  /** What the streaming server's runtime reaches through. */
  streamTarget(): StreamTarget {
    return {
      fifoDir: `${this.deps.state}/exec`,
      runningContainer: async (id) => {
        const c = this.containers.get(id);
        const t = this.#task(c.id);
        if (
          t === undefined || (await this.#containerState(c)) !== ContainerState.CONTAINER_RUNNING
        ) {
          throw failedPrecondition(`container ${c.id} is not running`);
        }
        return { task: t, spec: await this.#specOf(c.id), io: this.#io.get(c.id) };
      },
      sandboxNetns: (id) => this.sandboxes.get(id).netnsPath,
      stdinOnce: (id) => this.containers.get(id).config.stdinOnce,
    };
  }

  #streams(): StreamServer {
    if (this.deps.streams === undefined) {
      throw unavailable("the streaming server is not running");
    }
    return this.deps.streams;
  }

  // ---- pod sandboxes ----

  async runPodSandbox(config: PodSandboxConfig | undefined, handler: string): Promise<string> {
    if (config === undefined) throw invalidArgument("sandbox config is required");
    if (config.metadata === undefined) {
      throw invalidArgument("sandbox config must include metadata");
    }
    if (config.metadata.name === "" || config.metadata.namespace === "") {
      throw invalidArgument("sandbox metadata must name the pod and its namespace");
    }
    const id = newId();
    const name = sandboxName(config);
    this.sandboxes.reserve(name, id);
    const undo: (() => Promise<unknown> | unknown)[] = [() => this.sandboxes.release(name)];
    try {
      let runtime;
      try {
        runtime = resolveRuntime(this.deps.config, handler);
      } catch (err) {
        if (!isCode(err, Code.NotFound)) throw err;
        throw notFound(
          `failed to get sandbox runtime: no runtime for ${JSON.stringify(handler)} is configured`,
        );
      }
      const image = await this.#sandboxImage();
      const hostNet = config.linux?.securityContext?.namespaceOptions?.network === 2;
      let netnsPath = "";
      let ips: string[] = [];
      if (!hostNet) {
        netnsPath = await createNetns(
          this.deps.cri.netnsMountsUnderStateDir ? `${this.deps.state}/netns` : "/var/run/netns",
        );
        undo.push(() => removeNetns(netnsPath));
        const m = config.metadata;
        const net = await this.deps.cni.setup(id, netnsPath, {
          podName: m.name,
          podNamespace: m.namespace,
          podUid: m.uid,
          portMappings: config.portMappings.map((p) => ({
            hostPort: p.hostPort,
            containerPort: p.containerPort,
            protocol: (["tcp", "udp", "sctp"] as const)[p.protocol] ?? "tcp",
            ...(p.hostIp ? { hostIP: p.hostIp } : {}),
          })),
        });
        undo.push(() => this.deps.cni.teardown(id, netnsPath));
        ips = net.ips.map((ip) => ip.address.split("/")[0]);
      }
      // Files the pod's containers get: hostname, hosts, resolv.conf, and a /dev/shm of its own.
      const dir = this.#sandboxDir(id);
      await Deno.mkdir(dir, { recursive: true, mode: 0o711 });
      undo.push(() => Deno.remove(dir, { recursive: true }));
      await this.#writePodFiles(dir, config, hostNet);
      const stateDir = this.#sandboxStateDir(id);
      const shmPath = `${stateDir}/shm`;
      await Deno.mkdir(shmPath, { recursive: true, mode: 0o711 });
      undo.push(() => Deno.remove(stateDir, { recursive: true }));
      await mountShm(shmPath);
      undo.push(() => unmountShm(shmPath));

      const spec = sandboxSpec({
        id,
        config,
        image: image.config,
        netnsPath,
        shmPath,
        seccomp: await loadSeccomp(config.linux?.securityContext),
        maxOomScoreAdj: this.deps.cri.restrictOomScoreAdj ? await ownOomScoreAdj() : undefined,
      });
      const mounts = await this.deps.snapshotter.prepare(NS, id, image.chainId, {
        lease: this.#lease(undo),
      });
      undo.push(() => this.deps.snapshotter.remove(NS, id));
      const sandbox: Sandbox = {
        id,
        name,
        config,
        runtimeHandler: handler,
        netnsPath,
        createdAt: nowNanos(),
        pid: 0,
        ready: false,
        ips,
      };
      this.deps.md.containers.create(NS, {
        id,
        labels: { ...config.labels, [KIND_LABEL]: "sandbox" },
        image: image.name,
        runtime: { name: runtime.name },
        spec: { typeUrl: SPEC_TYPE_URL, value: encodeSpec(spec) },
        snapshotter: this.deps.cri.snapshotter,
        snapshotKey: id,
        extensions: { [SANDBOX_EXTENSION]: sandboxExtension(sandbox) },
      });
      undo.push(() => this.deps.md.containers.delete(NS, id));
      const { task, pid } = await this.deps.tasks.create(NS, id, {
        spec: encodeSpec(spec),
        runtime: runtime.name,
        rootfs: mounts.map((m) => ({ ...m, target: "" })),
        stdin: "",
        stdout: "",
        stderr: "",
        terminal: false,
      });
      undo.push(() => this.deps.tasks.delete(NS, id).catch(() => {}));
      undo.push(() => task.task.kill({ id, signal: 9, all: true }).catch(() => {}));
      await task.task.start({ id });
      sandbox.pid = pid;
      sandbox.ready = true;
      this.sandboxes.add(sandbox);
      this.#watchExit(id, () => sandbox.ready = false);
      return id;
    } catch (err) {
      await undoAll(undo, "RunPodSandbox", id);
      throw err;
    } finally {
      this.#endLease(undo);
    }
  }

  async #writePodFiles(dir: string, config: PodSandboxConfig, hostNet: boolean): Promise<void> {
    const hostname = hostNet ? Deno.hostname() : config.hostname || Deno.hostname();
    await Deno.writeTextFile(`${dir}/hostname`, `${hostname}\n`);
    if (hostNet) {
      await Deno.copyFile("/etc/hosts", `${dir}/hosts`).catch(() =>
        Deno.writeTextFile(`${dir}/hosts`, "")
      );
    } else {
      await Deno.writeTextFile(
        `${dir}/hosts`,
        [
          "127.0.0.1\tlocalhost",
          "::1\tlocalhost ip6-localhost ip6-loopback",
          "fe00::0\tip6-localnet",
          "fe00::0\tip6-mcastprefix",
          "fe00::1\tip6-allnodes",
          "fe00::2\tip6-allrouters",
          "",
        ].join("\n"),
      );
    }
    const dns = config.dnsConfig;
    if (dns && (dns.servers.length > 0 || dns.searches.length > 0 || dns.options.length > 0)) {
      const lines = [
        ...(dns.searches.length > 0 ? [`search ${dns.searches.join(" ")}`] : []),
        ...dns.servers.map((s) => `nameserver ${s}`),
        ...(dns.options.length > 0 ? [`options ${dns.options.join(" ")}`] : []),
      ];
      await Deno.writeTextFile(`${dir}/resolv.conf`, lines.join("\n") + "\n");
    } else {
      await Deno.copyFile("/etc/resolv.conf", `${dir}/resolv.conf`).catch(() =>
        Deno.writeTextFile(`${dir}/resolv.conf`, "")
      );
    }
  }

  async stopPodSandbox(id: string): Promise<void> {
    const s = this.sandboxes.get(id);
    // Its containers first, at once (the kubelet has stopped them with grace already).
    for (const c of this.containers.all().filter((c) => c.sandboxId === s.id)) {
      await this.stopContainer(c.id, 0);
    }
    const t = this.#task(s.id);
    if (t !== undefined) {
      const st = await this.#taskStatus(s.id);
      if (st.status === TaskStatus.RUNNING || st.status === TaskStatus.PAUSED) {
        await t.task.kill({ id: s.id, signal: 9, all: true }).catch((err) => {
          if (!isCode(err, Code.NotFound)) throw err;
        });
        await t.task.wait({ id: s.id }, { timeoutMs: 30_000 });
      }
      await this.deps.tasks.delete(NS, s.id).catch((err) => {
        if (!isCode(err, Code.NotFound)) throw err;
      });
    }
    s.ready = false;
    if (s.netnsPath !== "") {
      // Always, also after a crash: the CNI state saved at setup says what to undo.
      await this.deps.cni.teardown(s.id, s.netnsPath);
      await removeNetns(s.netnsPath);
    }
    await unmountShm(`${this.#sandboxStateDir(s.id)}/shm`);
  }

  async removePodSandbox(id: string): Promise<void> {
    const s = this.sandboxes.find(id);
    if (s === undefined) return; // removed already: success, as containerd answers
    if (this.#task(s.id) !== undefined) {
      const st = await this.#taskStatus(s.id);
      if (st.status === TaskStatus.RUNNING) {
        throw failedPrecondition(`sandbox container ${JSON.stringify(s.id)} is not fully stopped`);
      }
    }
    await this.stopPodSandbox(s.id);
    for (const c of this.containers.all().filter((c) => c.sandboxId === s.id)) {
      await this.removeContainer(c.id);
    }
    await this.deps.snapshotter.remove(NS, s.id).catch((err) => {
      if (!isCode(err, Code.NotFound)) throw err;
    });
    try {
      this.deps.md.containers.delete(NS, s.id);
    } catch (err) {
      if (!isCode(err, Code.NotFound)) throw err;
    }
    await Deno.remove(this.#sandboxDir(s.id), { recursive: true }).catch(() => {});
    await Deno.remove(this.#sandboxStateDir(s.id), { recursive: true }).catch(() => {});
    this.sandboxes.delete(s.id);
    this.sandboxes.release(s.name);
  }

  async podSandboxStatus(id: string, verbose: boolean) {
    const s = this.sandboxes.get(id);
    const ns = s.config.linux?.securityContext?.namespaceOptions;
    const info: Record<string, string> = {};
    if (verbose) {
      info.info = JSON.stringify({
        pid: s.pid,
        processStatus: s.ready ? "running" : "stopped",
        netNamespaceClosed: s.netnsPath === "" ? false : !await exists(s.netnsPath),
        image: this.deps.cri.sandboxImage,
        snapshotKey: s.id,
        snapshotter: this.deps.cri.snapshotter,
        runtimeHandler: s.runtimeHandler,
        config: toJson(PodSandboxConfigSchema, s.config),
        runtimeSpec: await this.#specOf(s.id).catch(() => undefined),
      });
    }
    return {
      status: {
        id: s.id,
        metadata: s.config.metadata,
        state: this.#sandboxState(s),
        createdAt: s.createdAt,
        network: {
          ip: s.ips[0] ?? "",
          additionalIps: s.ips.slice(1).map((ip) => ({ ip })),
        },
        linux: {
          namespaces: {
            options: {
              network: ns?.network ?? 0,
              pid: ns?.pid ?? 0,
              ipc: ns?.ipc ?? 0,
              targetId: ns?.targetId ?? "",
            },
          },
        },
        labels: s.config.labels,
        annotations: s.config.annotations,
        runtimeHandler: s.runtimeHandler,
      },
      info,
    };
  }

  // ---- containers ----

  async createContainer(
    sandboxId: string,
    config: ContainerConfig | undefined,
    sandboxConfigIn: PodSandboxConfig | undefined,
  ): Promise<string> {
    if (config === undefined) throw invalidArgument("container config is required");
    if (config.metadata === undefined || config.metadata.name === "") {
      throw invalidArgument("container config must include metadata");
    }
    const s = this.sandboxes.get(sandboxId);
    if (!s.ready || s.pid === 0) {
      throw failedPrecondition(`sandbox ${s.id} is not ready: cannot create containers in it`);
    }
    const sandboxConfig = sandboxConfigIn?.metadata ? sandboxConfigIn : s.config;
    const id = newId();
    const name = containerName(config, s.config);
    this.containers.reserve(name, id);
    const undo: (() => Promise<unknown> | unknown)[] = [() => this.containers.release(name)];
    try {
      const imageRef = config.image?.image ?? "";
      if (imageRef === "") throw invalidArgument("container config must name an image");
      const image = await resolveImage(this.deps.images, imageRef, this.deps.cri.snapshotter);
      const devices = [];
      for (const d of config.devices) {
        const st = await Deno.stat(d.hostPath).catch(() => {
          throw notFound(`device ${d.hostPath}`);
        });
        const rdev = st.rdev ?? 0;
        devices.push({
          path: d.containerPath,
          type: st.isBlockDevice ? "b" : "c",
          major: Math.floor(rdev / 256) & 0xfff,
          minor: (rdev & 0xff) | ((rdev >> 12) & 0xfff00),
          access: d.permissions || "rwm",
        });
      }
      for (const m of config.mounts) {
        // containerd makes a missing host directory, as the kubelet expects.
        await Deno.stat(m.hostPath).catch(() => Deno.mkdir(m.hostPath, { recursive: true }));
      }
      const rootfs = await this.deps.snapshotter.prepare(NS, id, image.chainId, {
        lease: this.#lease(undo),
      });
      undo.push(() => this.deps.snapshotter.remove(NS, id));
      const user = resolveUser(
        containerUser(config, image.config),
        await readRootfsFile(rootfs, "/etc/passwd"),
        await readRootfsFile(rootfs, "/etc/group"),
      );
      const seccomp = await loadSeccomp(config.linux?.securityContext);
      const dir = this.#sandboxDir(s.id);
      const spec = containerSpec({
        id,
        sandboxId: s.id,
        config,
        sandboxConfig,
        image: image.config,
        imageName: imageRef,
        sandboxPid: s.pid,
        hostsPath: `${dir}/hosts`,
        resolvPath: `${dir}/resolv.conf`,
        hostnamePath: `${dir}/hostname`,
        shmPath: `${this.#sandboxStateDir(s.id)}/shm`,
        maxOomScoreAdj: this.deps.cri.restrictOomScoreAdj ? await ownOomScoreAdj() : undefined,
        devices,
        user,
        seccomp,
      });
      const logPath = config.logPath && s.config.logDirectory
        ? `${s.config.logDirectory}/${config.logPath}`
        : "";
      const c: CriContainer = {
        id,
        name,
        sandboxId: s.id,
        config,
        imageId: image.id,
        imageName: imageRef,
        logPath,
        createdAt: nowNanos(),
        status: newRunStatus(),
      };
      const containerDir = `${this.deps.root}/containers/${id}`;
      await Deno.mkdir(containerDir, { recursive: true, mode: 0o711 });
      undo.push(() => Deno.remove(containerDir, { recursive: true }));
      await this.#saveStatus(c);
      const rec = this.deps.md.containers.get(NS, s.id);
      this.deps.md.containers.create(NS, {
        id,
        labels: { ...config.labels, [KIND_LABEL]: "container" },
        image: image.name,
        runtime: { name: rec.runtime.name },
        spec: { typeUrl: SPEC_TYPE_URL, value: encodeSpec(spec) },
        snapshotter: this.deps.cri.snapshotter,
        snapshotKey: id,
        extensions: { [CONTAINER_EXTENSION]: containerExtension(c) },
        sandbox: s.id,
      });
      undo.push(() => this.deps.md.containers.delete(NS, id));
      await this.#createTask(c, spec);
      this.containers.add(c);
      return id;
    } catch (err) {
      await undoAll(undo, "CreateContainer", id);
      throw err;
    } finally {
      this.#endLease(undo);
    }
  }

  /** The container's task, with its output fifos copied into its log. */
  async #createTask(c: CriContainer, spec: Spec): Promise<void> {
    const { stdin, stdout, stderr } = await this.#openIo(c);
    try {
      const rootfs = await this.deps.snapshotter.mounts(NS, c.id);
      const rec = this.deps.md.containers.get(NS, c.id);
      await this.deps.tasks.create(NS, c.id, {
        spec: encodeSpec(spec),
        runtime: rec.runtime.name,
        rootfs: rootfs.map((m) => ({ ...m, target: "" })),
        stdin,
        stdout,
        stderr,
        terminal: c.config.tty,
      });
    } catch (err) {
      await this.#closeIo(c.id);
      throw err;
    }
  }

  /**
   * Starts copying the container's output fifos (made now, or left by a
   * daemon before this one) into its log file, and returns their paths.
   */
  async #openIo(c: CriContainer): Promise<StdioPaths> {
    const io = await ContainerIO.open({
      dir: `${this.deps.state}/io/${c.id}`,
      logPath: c.logPath,
      tty: c.config.tty,
      stdin: c.config.stdin,
    });
    this.#io.set(c.id, io);
    return io.paths;
  }

  /** Stops the copy of a container's output, drains it, and removes its fifos. */
  async #closeIo(id: string): Promise<void> {
    const io = this.#io.get(id);
    if (io === undefined) return;
    this.#io.delete(id);
    await io.stop();
    await Deno.remove(`${this.deps.state}/io/${id}`, { recursive: true }).catch(() => {});
  }

  async #saveStatus(c: CriContainer): Promise<void> {
    const path = `${this.deps.root}/containers/${c.id}/status`;
    await Deno.writeTextFile(`${path}.tmp`, encodeRunStatus(c.status));
    await Deno.rename(`${path}.tmp`, path);
  }

  #persistContainer(c: CriContainer): void {
    const rec = this.deps.md.containers.get(NS, c.id);
    this.deps.md.containers.update(NS, {
      ...rec,
      extensions: { ...rec.extensions, [CONTAINER_EXTENSION]: containerExtension(c) },
    }, ["extensions"]);
  }

  /** Records that container `c` exited and ends the copy of its output. */
  #exited(c: CriContainer, code: number, at: bigint): void {
    c.status.exitCode = code;
    c.status.finishedAt = at;
    c.status.reason = code === 0 ? "Completed" : "Error";
    this.#saveStatus(c).catch(() => {});
    this.#closeIo(c.id).catch(() => {});
  }

  async startContainer(id: string): Promise<void> {
    const c = this.containers.get(id);
    const t = this.#task(c.id);
    const st = await this.#taskStatus(c.id);
    if (t === undefined || st.status !== TaskStatus.CREATED || c.status.startedAt !== 0n) {
      throw failedPrecondition(
        `container ${c.id} is in ${
          ContainerState[await this.#containerState(c)]
        } state: only a created container can start`,
      );
    }
    const s = this.sandboxes.find(c.sandboxId);
    if (s === undefined || !s.ready) {
      throw failedPrecondition(`sandbox ${c.sandboxId} of container ${c.id} is not running`);
    }
    try {
      const r = await t.task.start({ id: c.id });
      c.status.pid = r.pid;
      c.status.startedAt = nowNanos();
      await this.#saveStatus(c);
      this.#watchExit(c.id, (code, at) => this.#exited(c, code, at));
    } catch (err) {
      c.status.finishedAt = nowNanos();
      c.status.exitCode = 128;
      c.status.reason = "StartError";
      c.status.message = (err as Error).message;
      await this.#saveStatus(c);
      throw err;
    }
  }

  async #stopSignal(c: CriContainer): Promise<number> {
    const image = await resolveImage(this.deps.images, c.imageId, this.deps.cri.snapshotter)
      .catch(() => undefined);
    const name = (image?.config as ImageConfig | undefined)?.StopSignal;
    if (!name) return 15;
    if (/^\d+$/.test(name)) return Number(name);
    return signalNumber(name.startsWith("SIG") ? name : `SIG${name}`);
  }

  async stopContainer(id: string, timeoutSeconds: number): Promise<void> {
    const c = this.containers.get(id);
    const t = this.#task(c.id);
    if (t === undefined) return;
    const st = await this.#taskStatus(c.id);
    if (st.status !== TaskStatus.RUNNING && st.status !== TaskStatus.PAUSED) return;
    const exited = () => t.task.wait({ id: c.id });
    if (timeoutSeconds > 0) {
      const deadline = Date.now() + timeoutSeconds * 1000;
      const signal = await this.#stopSignal(c);
      // A stop right after the start can come before the program installed
      // its handler; as its pid namespace's init it would never see the
      // signal, and the stop would wait out its whole timeout.
      await untilSignalReaches(
        st.pid,
        signal,
        Math.min(deadline, Date.now() + STOP_HANDLER_WAIT_MS),
      );
      await t.task.kill({ id: c.id, signal }).catch(() => {});
      const done = await Promise.race([
        exited().then(() => true, () => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), Math.max(0, deadline - Date.now()))),
      ]);
      if (done) return;
    }
    await t.task.kill({ id: c.id, signal: 9, all: true }).catch((err) => {
      if (!isCode(err, Code.NotFound)) throw err;
    });
    await exited().catch(() => {});
  }

  async removeContainer(id: string): Promise<void> {
    const c = this.containers.find(id);
    if (c === undefined) return; // removed already
    // A running container is killed first, as containerd's CRI does.
    if ((await this.#containerState(c)) === ContainerState.CONTAINER_RUNNING) {
      await this.stopContainer(c.id, 0);
    }
    if (this.#task(c.id) !== undefined) {
      await this.deps.tasks.delete(NS, c.id).catch((err) => {
        if (!isCode(err, Code.NotFound)) throw err;
      });
    }
    await this.#closeIo(c.id);
    await this.deps.snapshotter.remove(NS, c.id).catch((err) => {
      if (!isCode(err, Code.NotFound)) throw err;
    });
    try {
      this.deps.md.containers.delete(NS, c.id);
    } catch (err) {
      if (!isCode(err, Code.NotFound)) throw err;
    }
    await Deno.remove(`${this.deps.root}/containers/${c.id}`, { recursive: true }).catch(() => {});
    this.containers.delete(c.id);
    this.containers.release(c.name);
  }

  async #containerState(c: CriContainer): Promise<ContainerState> {
    if (c.status.finishedAt !== 0n) return ContainerState.CONTAINER_EXITED;
    const st = await this.#taskStatus(c.id);
    switch (st.status) {
      case TaskStatus.CREATED:
        return ContainerState.CONTAINER_CREATED;
      case TaskStatus.RUNNING:
      case TaskStatus.PAUSED:
      case TaskStatus.PAUSING:
        return ContainerState.CONTAINER_RUNNING;
      case TaskStatus.STOPPED:
        return ContainerState.CONTAINER_EXITED;
      default:
        return c.status.startedAt !== 0n
          ? ContainerState.CONTAINER_EXITED
          : ContainerState.CONTAINER_UNKNOWN;
    }
  }

  async #containerStatus(c: CriContainer): Promise<ContainerStatus> {
    const state = await this.#containerState(c);
    let { exitCode, finishedAt, reason } = c.status;
    if (state === ContainerState.CONTAINER_EXITED && finishedAt === 0n) {
      // Stopped, and its exit not recorded yet (the watcher is about to): ask the shim.
      const st = await this.#taskStatus(c.id);
      exitCode = st.exitStatus;
      finishedAt = nowNanos();
      reason = exitCode === 0 ? "Completed" : "Error";
    }
    return create(ContainerStatusSchema, {
      id: c.id,
      metadata: c.config.metadata,
      state,
      createdAt: c.createdAt,
      startedAt: c.status.startedAt,
      finishedAt,
      exitCode,
      image: c.config.image,
      imageRef: c.imageId,
      reason,
      message: c.status.message,
      labels: c.config.labels,
      annotations: c.config.annotations,
      mounts: c.config.mounts,
      logPath: c.logPath,
    });
  }

  // ---- stats ----

  /** The task's cgroup figures, or undefined when it has no running task. */
  async #usage(id: string): Promise<Usage | undefined> {
    const t = this.#task(id);
    if (t === undefined) return undefined;
    try {
      return usageOf((await t.task.stats({ id }, { timeoutMs: 10_000 })).stats);
    } catch {
      return undefined; // stopped or gone: no figures, as containerd leaves them out
    }
  }

  async #containerStats(c: CriContainer) {
    const now = nowNanos();
    const u = await this.#usage(c.id);
    const layer = await this.deps.snapshotter.usage(NS, c.id).catch(() => undefined);
    return create(ContainerStatsSchema, {
      attributes: {
        id: c.id,
        metadata: c.config.metadata,
        labels: c.config.labels,
        annotations: c.config.annotations,
      },
      ...(u ? criUsage(u, now) : {}),
      ...(layer
        ? {
          writableLayer: {
            timestamp: now,
            fsId: { mountpoint: this.deps.snapshotRoot },
            usedBytes: { value: BigInt(layer.size) },
            inodesUsed: { value: BigInt(layer.inodes) },
          },
        }
        : {}),
    });
  }

  /** A pod's figures: its sandbox's and its containers' cgroups summed, and each container's. */
  async #podStats(s: Sandbox) {
    const now = nowNanos();
    const mine = this.containers.all().filter((c) => c.sandboxId === s.id);
    const containers = await Promise.all(mine.map((c) => this.#containerStats(c)));
    const parts = await Promise.all([s.id, ...mine.map((c) => c.id)].map((id) => this.#usage(id)));
    const known = parts.filter((u) => u !== undefined);
    return create(PodSandboxStatsSchema, {
      attributes: {
        id: s.id,
        metadata: s.config.metadata,
        labels: s.config.labels,
        annotations: s.config.annotations,
      },
      linux: {
        ...(known.length > 0 ? criUsage(sumUsage(known), now) : {}),
        containers,
      },
    });
  }

  // ---- recovery ----

  /** Reloads the pods and containers a daemon before this one made, with their true state. */
  async recover(): Promise<void> {
    const records = this.deps.md.containers.list(NS);
    for (const rec of records) {
      const ext = rec.extensions[SANDBOX_EXTENSION];
      if (ext === undefined) continue;
      try {
        const s = sandboxFromExtension(ext);
        const st = await this.#taskStatus(s.id);
        s.pid = st.pid;
        s.ready = st.status === TaskStatus.RUNNING;
        this.sandboxes.reserve(s.name, s.id);
        this.sandboxes.add(s);
        if (s.ready) this.#watchExit(s.id, () => s.ready = false);
      } catch (err) {
        log.warn("cri: cannot reload sandbox", { id: rec.id, error: String(err) });
      }
    }
    for (const rec of records) {
      const ext = rec.extensions[CONTAINER_EXTENSION];
      if (ext === undefined) continue;
      try {
        const text = await Deno.readTextFile(`${this.deps.root}/containers/${rec.id}/status`)
          .catch(() => undefined);
        const c = containerFromExtension(ext, text ? decodeRunStatus(text) : newRunStatus());
        this.containers.reserve(c.name, c.id);
        this.containers.add(c);
        const st = await this.#taskStatus(c.id);
        if (
          (st.status === TaskStatus.RUNNING || st.status === TaskStatus.CREATED) &&
          c.status.finishedAt === 0n
        ) {
          // The copy of its output died with the old daemon: the shim still holds the fifos.
          await this.#openIo(c);
        }
        if (st.status === TaskStatus.RUNNING && c.status.finishedAt === 0n) {
          this.#watchExit(c.id, (code, at) => this.#exited(c, code, at));
        } else if (st.status === TaskStatus.STOPPED && c.status.finishedAt === 0n) {
          this.#exited(c, st.exitStatus, nowNanos());
        } else if (
          st.status === TaskStatus.UNKNOWN && c.status.startedAt !== 0n &&
          c.status.finishedAt === 0n
        ) {
          c.status.reason = "Unknown";
          this.#exited(c, 255, nowNanos());
        }
      } catch (err) {
        log.warn("cri: cannot reload container", { id: rec.id, error: String(err) });
      }
    }
  }

  /** Stops the copies of output (the daemon is going away; the tasks live on). */
  async close(): Promise<void> {
    await Promise.allSettled([...this.#io.values()].map((io) => io.stop()));
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** The daemon's own oom_score_adj: the lowest it may give without CAP_SYS_RESOURCE. */
async function ownOomScoreAdj(): Promise<number> {
  const text = await Deno.readTextFile("/proc/self/oom_score_adj").catch(() => "0");
  return Number(text.trim()) || 0;
}

/** Runs the undo steps of a failed create, last first; a failing step is logged, the rest still run. */
async function undoAll(undo: Array<() => unknown>, what: string, id: string): Promise<void> {
  for (const f of undo.reverse()) {
    try {
      await f();
    } catch (e) {
      log.warn(`cri: cleanup after a failed ${what}`, { id, error: String(e) });
    }
  }
}
