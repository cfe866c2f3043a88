/**
 * The daemon's life: prepare root and state, lock the root, load the
 * plugins, serve every RPC service they offer, and shut all of it down in
 * order.
 *
 * @module
 */

import {
  type Config,
  DESCRIBED_PLUGIN_SECTIONS,
  effectiveConfig,
  parseTcpAddress,
  tracingSettings,
  ttrpcAddress,
} from "../config/mod.ts";
import { BerthError, Code, toBerthError } from "../errdefs/mod.ts";
import type { Exchange } from "../events/mod.ts";
import { log } from "../log/mod.ts";
import {
  type DaemonProperties,
  loadPlugins,
  type PluginSet,
  pluginUri,
  type Registration,
  Registry,
  RequiredPluginError,
} from "../plugin/mod.ts";
import { GrpcServer } from "../grpc/mod.ts";
import { isRPCService } from "../services/mod.ts";
import { sameUserOnly, Server } from "../ttrpc/mod.ts";
import { VERSION } from "../version.ts";
import { flushTracing, makeTracer, setTracer } from "../tracing/mod.ts";
import { lockRoot, type RootLock } from "./lock.ts";
import { type Operability, operability } from "./ops.ts";
import { builtinPlugins } from "./plugins.ts";

/** A daemon that is serving. */
export interface RunningDaemon {
  /** The configuration it runs with (derived values filled in). */
  readonly config: Config;
  /** Every plugin, whatever its status. */
  readonly plugins: PluginSet;
  /** The ttrpc socket it listens on. */
  readonly ttrpcAddress: string;
  /** The gRPC socket it listens on (`grpc.address`). */
  readonly grpcAddress: string;
  /** Where it also serves gRPC over TCP (`grpc.tcp_address`, the port bound), if it does. */
  readonly grpcTcpAddress: Deno.NetAddr | undefined;
  /**
   * Stops accepting, lets calls in flight finish (up to `timeoutMs`),
   * closes the plugins, removes the sockets and releases the root.
   * Later calls wait for the first; one with `timeoutMs: 0` closes the
   * connections still busy at once.
   */
  stop(opts?: { timeoutMs?: number }): Promise<void>;
}

/** Options of {@link startDaemon}. */
export interface StartOptions {
  /** The plugins to load (default: the built-in ones). */
  plugins?: readonly Registration[];
}

/** Makes `path` (and parents) with `mode` when missing; with `force`, also sets the mode of an existing one. */
async function makeDir(path: string, mode: number, force = false): Promise<void> {
  let existed = true;
  try {
    await Deno.stat(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    existed = false;
    await Deno.mkdir(path, { recursive: true, mode });
  }
  // The umask trims a new directory's mode; an existing one is changed only when asked.
  if (!existed || force) await Deno.chmod(path, mode);
}

async function removeSocket(path: string): Promise<void> {
  try {
    const info = await Deno.lstat(path);
    if (info.isSocket) await Deno.remove(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) {
      log.warn("cannot remove socket", { path, error: String(err) });
    }
  }
}

async function applyOomScore(score: number): Promise<void> {
  if (score === 0) return;
  try {
    await Deno.writeTextFile("/proc/self/oom_score_adj", String(score));
  } catch (err) {
    log.warn("cannot set oom_score_adj", { score, error: String(err) });
  }
}

/**
 * What the daemon's stop asks of the runtime plugin (its shape, so that
 * this module stays out of the daemon <-> runtime import cycle).
 */
interface IdleShims {
  retireIdleShims?(): Promise<void>;
}

/**
 * Starts a daemon with `config`: root 0700 and state 0711 (as containerd
 * makes them), the root lock, plugins in dependency order, then the ttrpc
 * socket (0600) at `<grpc.address>.ttrpc` or `ttrpc.address`. Fails when
 * the root is locked by another daemon, when a required plugin does not
 * load, or when the socket is in use; nothing is left behind on failure.
 */
export async function startDaemon(config: Config, opts: StartOptions = {}): Promise<RunningDaemon> {
  const cfg = effectiveConfig(config);
  const address = ttrpcAddress(cfg);
  // As containerd: the root is private (0700, even when it existed), the
  // state traversable (0711) so that shims' and containers' paths resolve.
  await makeDir(cfg.root, 0o700, true);
  // Nothing else is touched before the lock is held: a second daemon leaves no trace.
  const lock: RootLock = await lockRoot(cfg.root);
  let plugins: PluginSet | undefined;
  let server: Server | undefined;
  let grpc: GrpcServer | undefined;
  let listening = false;
  let grpcListening = false;
  let grpcTcp: Deno.NetAddr | undefined;
  let ops: Operability | undefined;
  try {
    await makeDir(cfg.state, 0o711);
    await applyOomScore(cfg.oom_score);
    // Always installed: with nothing configured it records only calls that
    // arrive sampled (`berth trace`), and costs a metadata lookup per call.
    setTracer(makeTracer(tracingSettings(cfg), VERSION));
    log.info("starting berth", { version: VERSION, root: cfg.root, state: cfg.state });
    const registry = new Registry();
    for (const reg of opts.plugins ?? builtinPlugins()) registry.register(reg);
    const known = new Set([
      ...registry.registrations().map(pluginUri),
      ...DESCRIBED_PLUGIN_SECTIONS,
    ]);
    for (const uri of Object.keys(cfg.plugins)) {
      if (!known.has(uri)) {
        log.warn("config has a section for a plugin berth does not have", { plugin: uri });
      }
    }
    try {
      plugins = await loadPlugins(registry, {
        root: cfg.root,
        state: cfg.state,
        config: cfg.plugins,
        disabled: cfg.disabled_plugins,
        required: cfg.required_plugins,
        properties: {
          config: cfg,
          address: cfg.grpc.address,
          ttrpcAddress: address,
        } satisfies DaemonProperties,
      });
    } catch (err) {
      if (err instanceof RequiredPluginError) plugins = err.plugins;
      throw err;
    }

    // Both listeners take the very same service instances: every plugin
    // instance that is an RPCService registers itself on each transport.
    // The sockets are 0600, and a peer that reaches them anyway (a mode
    // loosened by hand, a descriptor passed on) is still vetted: only our
    // uid and the owner the config gives each socket are served.
    ops = await operability(cfg);
    server = new Server({
      observe: ops.ttrpc,
      authorize: sameUserOnly([Deno.uid() ?? 0, cfg.ttrpc.uid]),
    });
    grpc = new GrpcServer({
      maxRecvMessageSize: cfg.grpc.max_recv_message_size,
      maxSendMessageSize: cfg.grpc.max_send_message_size,
      observe: ops.grpc,
      authorize: sameUserOnly([Deno.uid() ?? 0, cfg.grpc.uid]),
    });
    for (const p of plugins.list()) {
      if (p.status === "ok" && isRPCService(p.instance)) {
        p.instance.registerOn(server, "ttrpc");
        p.instance.registerOn(grpc, "grpc");
      }
    }
    // A missing socket directory is made private; an existing one (the
    // state directory, /tmp) is left as it is: the sockets themselves are 0600.
    await makeDir(address.slice(0, address.lastIndexOf("/")) || "/", 0o700);
    await server.listen(address);
    listening = true;
    if (cfg.ttrpc.uid !== 0 || cfg.ttrpc.gid !== 0) {
      await Deno.chown(address, cfg.ttrpc.uid, cfg.ttrpc.gid);
    }
    const grpcAddress = cfg.grpc.address;
    await makeDir(grpcAddress.slice(0, grpcAddress.lastIndexOf("/")) || "/", 0o700);
    await grpc.listen(grpcAddress);
    grpcListening = true;
    if (cfg.grpc.uid !== 0 || cfg.grpc.gid !== 0) {
      await Deno.chown(grpcAddress, cfg.grpc.uid, cfg.grpc.gid);
    }
    if (cfg.grpc.tcp_address !== "") grpcTcp = await listenTcp(grpc, cfg);
    await ops.serve(plugins);
    log.info("serving...", { address: grpcAddress, ttrpc: address });
  } catch (err) {
    await ops?.close();
    if (server !== undefined) {
      await server.close();
      if (listening) await removeSocket(address);
    }
    if (grpc !== undefined) {
      await grpc.close();
      if (grpcListening) await removeSocket(cfg.grpc.address);
    }
    await plugins?.close();
    lock.release();
    throw err;
  }

  const running = plugins;
  const srv = server;
  const grpcSrv = grpc;
  const endpoints = ops;
  let stopping: Promise<void> | undefined;
  const stop = (o: { timeoutMs?: number } = {}): Promise<void> => {
    // Asked again with no time to wait (a second signal): drop what is in flight.
    if (stopping !== undefined && o.timeoutMs === 0) {
      srv.close().catch(() => {});
      grpcSrv.close().catch(() => {});
    }
    stopping ??= (async () => {
      log.info("stopping berth", { address });
      // Long-lived event subscriptions would keep their connections busy
      // forever: end them first, then wait for everything else in flight.
      for (const ex of running.all<Exchange>("io.containerd.event.v1").values()) ex.close();
      await endpoints.close();
      // No new connections; those open (the shims' event publishers among
      // them) are still served while idle shared shims are shut down.
      srv.stopAccepting();
      grpcSrv.stopAccepting();
      for (const rt of running.all<IdleShims>("io.containerd.runtime.v2").values()) {
        await rt.retireIdleShims?.();
      }
      const timeoutMs = o.timeoutMs ?? 10_000;
      await Promise.all([
        srv.shutdown({ timeoutMs }).catch(async (err) => {
          log.warn("ttrpc shutdown failed", { error: toBerthError(err).message });
          await srv.close();
        }),
        grpcSrv.shutdown({ timeoutMs }).catch(async (err) => {
          log.warn("grpc shutdown failed", { error: toBerthError(err).message });
          await grpcSrv.close();
        }),
      ]);
      await removeSocket(address);
      await removeSocket(cfg.grpc.address);
      await flushTracing();
      await running.close();
      lock.release();
      log.info("berth stopped");
    })();
    return stopping;
  };
  return {
    config: cfg,
    plugins: running,
    ttrpcAddress: address,
    grpcAddress: cfg.grpc.address,
    grpcTcpAddress: grpcTcp,
    stop,
  };
}

/**
 * Serves `grpc` on `grpc.tcp_address` as well: TLS when tcp_tls_cert and
 * tcp_tls_key name PEM files, plaintext otherwise (as containerd does). The
 * config check has refused tcp_tls_ca already (no client certificates).
 */
async function listenTcp(grpc: GrpcServer, cfg: Config): Promise<Deno.NetAddr> {
  const { hostname, port } = parseTcpAddress(cfg.grpc.tcp_address);
  let tls: { cert: string; key: string } | undefined;
  if (cfg.grpc.tcp_tls_cert !== "") {
    const read = async (key: string, path: string) => {
      try {
        return await Deno.readTextFile(path);
      } catch (err) {
        throw new BerthError(Code.InvalidArgument, `grpc.${key}: ${(err as Error).message}`);
      }
    };
    tls = {
      cert: await read("tcp_tls_cert", cfg.grpc.tcp_tls_cert),
      key: await read("tcp_tls_key", cfg.grpc.tcp_tls_key),
    };
  }
  let addr: Deno.NetAddr;
  try {
    addr = grpc.listenTcp({ hostname, port, tls });
  } catch (err) {
    throw new BerthError(
      err instanceof Deno.errors.AddrInUse ? Code.AlreadyExists : Code.InvalidArgument,
      `grpc.tcp_address ${cfg.grpc.tcp_address}: ${(err as Error).message}`,
    );
  }
  const where = { tcp_address: `${addr.hostname}:${addr.port}` };
  if (tls === undefined) {
    // containerd's behaviour too, but worth saying: the port is not private as the socket is.
    log.warn("serving gRPC over plaintext TCP: whoever can reach it controls the daemon", where);
  } else log.info("serving gRPC over TLS", where);
  return addr;
}
