/**
 * The plugin registry: what the daemon is made of. Each plugin has a type
 * (e.g. "io.containerd.content.v1"), an id, the plugins it requires and an
 * init function; {@link loadPlugins} initialises them in dependency order
 * and records each one's outcome, so that a missing optional feature costs
 * only that feature, and `plugins ls` can say why.
 *
 * @module
 */

import {
  BerthError,
  Code,
  failedPrecondition,
  invalidArgument,
  notFound,
  toBerthError,
} from "../errdefs/mod.ts";
import { log } from "../log/mod.ts";
import type { Config } from "../config/mod.ts";

/**
 * What every plugin finds in `ctx.properties`: the daemon's effective
 * config (runtimes, timeouts), and its addresses (a task manager gives
 * shims the ttrpc one as TTRPC_ADDRESS and the other as -address).
 */
export interface DaemonProperties {
  config: Config;
  /** The gRPC address (`grpc.address`). */
  address: string;
  /** The ttrpc socket path. */
  ttrpcAddress: string;
}

/** The daemon's properties of `ctx`; FailedPrecondition for a plugin loaded outside a daemon. */
export function daemonProperties(
  ctx: { uri: string; properties: DaemonProperties | undefined },
): DaemonProperties {
  if (ctx.properties === undefined) {
    throw failedPrecondition(`plugin ${ctx.uri} needs the daemon's properties (config, addresses)`);
  }
  return ctx.properties;
}

/** A dependency: a plugin type (any plugin of it), a type and id, or "*" (every other plugin). */
export type Requirement = string | { type: string; id: string };

/** A platform a plugin supports (introspection shows it). */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** What a plugin may tell about itself while it starts. */
export interface PluginMeta {
  /** Values others may read, e.g. a snapshotter's root directory. */
  exports: Record<string, string>;
  /** Feature switches clients may test for. */
  capabilities: string[];
  /** Platforms supported; empty means all. */
  platforms: Platform[];
}

/** A plugin, as registered. */
export interface Registration<T = unknown> {
  /** Plugin type, e.g. "io.containerd.service.v1". */
  type: string;
  /** Id, unique within the type, e.g. "containers-service". */
  id: string;
  /** Plugins that must be loaded first. */
  requires?: Requirement[];
  /** When true the daemon does not start unless this plugin loads. */
  required?: boolean;
  /** Makes the plugin's instance; throw {@link SkipPlugin} when it does not apply here. */
  init(ctx: InitContext): T | Promise<T>;
  /** Releases the instance at shutdown (stores close, timers stop). */
  close?(instance: T): void | Promise<void>;
}

/** Thrown by an init function when the plugin does not apply (no overlayfs, disabled feature). */
export class SkipPlugin extends BerthError {
  /** `reason` says why, e.g. "overlayfs is not supported by the kernel". */
  constructor(reason: string) {
    // containerd's clients show a plugin as "skip" when its error says "skip plugin".
    super(Code.FailedPrecondition, `${reason}: skip plugin`);
    this.name = "SkipPlugin";
  }
}

/** Outcome of a plugin's initialisation. */
export type PluginStatus = "ok" | "skip" | "error";

/** A plugin after loading: its registration, outcome and instance. */
export interface LoadedPlugin {
  readonly registration: Registration;
  readonly type: string;
  readonly id: string;
  /** `<type>.<id>`. */
  readonly uri: string;
  readonly status: PluginStatus;
  /** Why it did not load (status skip or error). */
  readonly error?: BerthError;
  readonly meta: PluginMeta;
  /** The instance (status ok only). */
  readonly instance?: unknown;
}

/** What a plugin's init function gets. */
export interface InitContext {
  /** This plugin's `<type>.<id>`, e.g. for naming its config keys in errors. */
  readonly uri: string;
  /** This plugin's own directory under the daemon's root: `<root>/<type>.<id>` (not created). */
  readonly root: string;
  /** This plugin's own directory under the daemon's state: `<state>/<type>.<id>` (not created). */
  readonly state: string;
  /** The daemon's root and state directories. */
  readonly daemonRoot: string;
  readonly daemonState: string;
  /** This plugin's config section (`[plugins."<type>.<id>"]`), or an empty table. */
  readonly config: Record<string, unknown>;
  /** What the daemon passes to every plugin; undefined when plugins are loaded outside one. */
  readonly properties: DaemonProperties | undefined;
  /** Fill in exports, capabilities and platforms here. */
  readonly meta: PluginMeta;
  /** The instance of the loaded plugin `type`/`id`; FailedPrecondition when it did not load. */
  get<T>(type: string, id: string): T;
  /** The first loaded plugin of `type` (registration order). */
  first<T>(type: string): T;
  /** Every loaded plugin of `type`, by id. */
  all<T>(type: string): Map<string, T>;
  /** Every plugin of the registry, loaded or not (for introspection). */
  plugins(): readonly LoadedPlugin[];
}

/** Options of {@link loadPlugins}. */
export interface LoadOptions {
  root: string;
  state: string;
  /** Per-plugin config sections keyed by URI. */
  config?: Record<string, Record<string, unknown>>;
  /** Ids or URIs of plugins not to load at all. */
  disabled?: readonly string[];
  /** URIs of plugins that must load (in addition to those registered as required). */
  required?: readonly string[];
  /** Passed to every init as `ctx.properties`. */
  properties?: DaemonProperties;
}

/** Ordered registrations; see {@link loadPlugins}. */
export class Registry {
  #regs: Registration[] = [];

  /** Adds a plugin; InvalidArgument on a missing type or id, AlreadyExists on a duplicate. */
  register<T>(reg: Registration<T>): void {
    if (!reg.type) throw invalidArgument("plugin: no type");
    if (!reg.id) throw invalidArgument(`plugin ${reg.type}: no id`);
    const uri = `${reg.type}.${reg.id}`;
    if (this.#regs.some((r) => r.type === reg.type && r.id === reg.id)) {
      throw new BerthError(Code.AlreadyExists, `plugin ${uri}: already registered`);
    }
    if (reg.requires?.includes("*") && reg.requires.length !== 1) {
      throw invalidArgument(`plugin ${uri}: "*" must be its only requirement`);
    }
    this.#regs.push(reg as Registration);
  }

  /** Registrations in the order they were added. */
  registrations(): readonly Registration[] {
    return this.#regs;
  }
}

/** `<type>.<id>`. */
export function pluginUri(r: { type: string; id: string }): string {
  return `${r.type}.${r.id}`;
}

function requirementText(q: Requirement): string {
  return typeof q === "string" ? q : pluginUri(q);
}

/**
 * Orders registrations so each comes after what it requires, keeping
 * registration order otherwise. Throws InvalidArgument on a cycle.
 */
export function initOrder(regs: readonly Registration[]): Registration[] {
  const ordered: Registration[] = [];
  const done = new Set<Registration>();
  const visiting = new Set<Registration>();
  const deps = (r: Registration): Registration[] => {
    const out: Registration[] = [];
    for (const q of r.requires ?? []) {
      if (q === "*") out.push(...regs.filter((o) => o !== r && !(o.requires ?? []).includes("*")));
      else if (typeof q === "string") out.push(...regs.filter((o) => o.type === q));
      else out.push(...regs.filter((o) => o.type === q.type && o.id === q.id));
    }
    return out;
  };
  const visit = (r: Registration, chain: Registration[]) => {
    if (done.has(r)) return;
    if (visiting.has(r)) {
      const cycle = [...chain.slice(chain.indexOf(r)), r].map(pluginUri).join(" -> ");
      throw invalidArgument(`plugin dependency cycle: ${cycle}`);
    }
    visiting.add(r);
    for (const d of deps(r)) visit(d, [...chain, r]);
    visiting.delete(r);
    done.add(r);
    ordered.push(r);
  };
  for (const r of regs) visit(r, []);
  return ordered;
}

/** The loaded plugins of a daemon, in initialisation order. */
export class PluginSet {
  #plugins: LoadedPlugin[] = [];

  /** @internal adds one outcome (used by {@link loadPlugins}). */
  add(p: LoadedPlugin): void {
    this.#plugins.push(p);
  }

  /** Every plugin, in initialisation order, whatever its status. */
  list(): readonly LoadedPlugin[] {
    return this.#plugins;
  }

  /** The plugin `type`/`id`, if registered and not disabled. */
  find(type: string, id: string): LoadedPlugin | undefined {
    return this.#plugins.find((p) => p.type === type && p.id === id);
  }

  /** The instance of `type`/`id`; NotFound when unknown, FailedPrecondition when it did not load. */
  get<T>(type: string, id: string): T {
    const p = this.find(type, id);
    if (p === undefined) throw notFound(`plugin ${type}.${id}`);
    if (p.status !== "ok") {
      throw failedPrecondition(`plugin ${p.uri} is not loaded: ${p.error?.message}`);
    }
    return p.instance as T;
  }

  /** Every loaded instance of `type`, by id. */
  all<T>(type: string): Map<string, T> {
    const out = new Map<string, T>();
    for (const p of this.#plugins) {
      if (p.type === type && p.status === "ok") out.set(p.id, p.instance as T);
    }
    return out;
  }

  /** The first loaded instance of `type`; FailedPrecondition naming why none loaded. */
  first<T>(type: string): T {
    const p = this.#plugins.find((p) => p.type === type && p.status === "ok");
    if (p !== undefined) return p.instance as T;
    const failed = this.#plugins.filter((p) => p.type === type);
    if (failed.length === 0) throw failedPrecondition(`no plugin of type ${type} is registered`);
    throw failedPrecondition(
      `no plugin of type ${type} loaded: ${
        failed.map((p) => `${p.uri}: ${p.error?.message}`).join("; ")
      }`,
    );
  }

  /**
   * Closes every loaded plugin, last initialised first, each once; errors
   * are logged and do not stop the others.
   */
  async close(): Promise<void> {
    for (const p of [...this.#plugins].reverse()) {
      if (p.status !== "ok" || p.registration.close === undefined) continue;
      try {
        await p.registration.close(p.instance);
      } catch (err) {
        log.warn("plugin close failed", { id: p.uri, error: String(err) });
      }
    }
  }
}

/** Raised by {@link loadPlugins} when a required plugin did not load. */
export class RequiredPluginError extends BerthError {
  /** Every plugin loaded before the failure (close them). */
  readonly plugins: PluginSet;
  constructor(message: string, plugins: PluginSet) {
    super(Code.FailedPrecondition, message);
    this.name = "RequiredPluginError";
    this.plugins = plugins;
  }
}

function unmet(q: Requirement, self: Registration, set: PluginSet): string | undefined {
  if (q === "*") return undefined;
  if (typeof q !== "string") {
    const p = set.find(q.type, q.id);
    if (p === undefined) {
      return `requires plugin ${pluginUri(q)}, which is not registered or disabled`;
    }
    return p.status === "ok"
      ? undefined
      : `requires plugin ${p.uri}, which did not load: ${p.error?.message}`;
  }
  const ofType = set.list().filter((p) => p.type === q && p.registration !== self);
  if (ofType.some((p) => p.status === "ok")) return undefined;
  if (ofType.length === 0) return `requires a plugin of type ${q}, and none is registered`;
  return `requires a plugin of type ${q}, and none loaded (${
    ofType.map((p) => `${p.uri}: ${p.error?.message}`).join("; ")
  })`;
}

/**
 * Initialises every registered, not disabled plugin in dependency order.
 * A plugin whose init throws, or whose requirement did not load, is
 * recorded with status "error" (or "skip" for {@link SkipPlugin}) and
 * loading goes on; when that plugin is required (by its registration or by
 * `opts.required`) loading stops with a {@link RequiredPluginError}.
 */
export async function loadPlugins(registry: Registry, opts: LoadOptions): Promise<PluginSet> {
  const disabled = new Set(opts.disabled ?? []);
  const isDisabled = (r: Registration) => disabled.has(r.id) || disabled.has(pluginUri(r));
  const regs = registry.registrations().filter((r) => !isDisabled(r));
  for (const r of registry.registrations()) {
    if (isDisabled(r)) log.info("plugin disabled", { id: pluginUri(r) });
  }
  const required = new Set(opts.required ?? []);
  const set = new PluginSet();
  for (const uri of required) {
    if (!regs.some((r) => pluginUri(r) === uri)) {
      throw new RequiredPluginError(`required plugin ${uri} is not registered or is disabled`, set);
    }
  }
  for (const reg of initOrder(regs)) {
    const uri = pluginUri(reg);
    const meta: PluginMeta = { exports: {}, capabilities: [], platforms: [] };
    const ctx: InitContext = {
      uri,
      root: `${opts.root}/${uri}`,
      state: `${opts.state}/${uri}`,
      daemonRoot: opts.root,
      daemonState: opts.state,
      config: opts.config?.[uri] ?? {},
      properties: opts.properties,
      meta,
      get: (type, id) => set.get(type, id),
      first: (type) => set.first(type),
      all: (type) => set.all(type),
      plugins: () => set.list(),
    };
    log.info("loading plugin", { id: uri, type: reg.type });
    let outcome: LoadedPlugin;
    const base = { registration: reg, type: reg.type, id: reg.id, uri, meta };
    const missing = (reg.requires ?? []).map((q) => unmet(q, reg, set)).find((m) =>
      m !== undefined
    );
    if (missing !== undefined) {
      outcome = { ...base, status: "error", error: failedPrecondition(missing) };
    } else {
      try {
        outcome = { ...base, status: "ok", instance: await reg.init(ctx) };
      } catch (err) {
        const error = toBerthError(err);
        outcome = { ...base, status: err instanceof SkipPlugin ? "skip" : "error", error };
      }
    }
    set.add(outcome);
    if (outcome.status === "skip") {
      log.info("skip loading plugin", { id: uri, error: outcome.error!.message });
    } else if (outcome.status === "error") {
      log.warn("failed to load plugin", { id: uri, error: outcome.error!.message });
    }
    if (outcome.status !== "ok" && (reg.required || required.has(uri))) {
      throw new RequiredPluginError(`load required plugin ${uri}: ${outcome.error!.message}`, set);
    }
  }
  return set;
}

/** The requirement list of a registration as text, as introspection reports it. */
export function requirementsOf(reg: Registration): string[] {
  return (reg.requires ?? []).map(requirementText);
}
