/**
 * Shims the daemon shares: containers of one namespace that run on the same
 * shim binary with the same options (and name no shim group of their own)
 * go into a running shim with room, up to `size` per shim, instead of each
 * starting one. A Deno shim costs ~16 MB however few containers it holds,
 * so the count of shim processes, not of containers, decides a node's
 * memory; a shim's crash still hurts only the containers it holds.
 *
 * A shim whose containers are all gone waits `idleMs` for the next one (a
 * run after a run costs no shim start), then the daemon shuts it down. The
 * daemon writes a record of each shared shim in `dir`, so that one that
 * idles while the daemon is killed is found and shut down by the next.
 *
 * Only the runtime v2 protocol is used: the first container of a shim
 * starts it with the binary's `start` action; the others are created over
 * the same connection, as containerd does for the containers of a sandbox.
 *
 * @module
 */

import { log } from "../log/mod.ts";

/** A shim shared by the daemon's containers. */
export interface PooledShim {
  /** What containers must have in common to share it (namespace, binary, options). */
  readonly key: string;
  readonly namespace: string;
  readonly address: string;
  readonly binary: string;
  /** Containers placed in it (created, or being created). */
  tasks: number;
  /** Being shut down: takes no new containers. */
  retiring: boolean;
  idleTimer?: ReturnType<typeof setTimeout>;
}

/** What a record of a shared shim holds (`<dir>/<hash of address>.json`). */
export interface PoolRecord {
  key: string;
  namespace: string;
  address: string;
  binary: string;
}

/** Options of {@link ShimPool}. */
export interface ShimPoolOptions {
  /** Most containers per shared shim; 0 turns sharing off (a shim per container). */
  size: number;
  /** How long an empty shared shim waits for a container before it is shut down. */
  idleMs: number;
  /** Where the records of shared shims are kept. */
  dir: string;
  /** Shuts an idle shim down (Shutdown over its connection, then closes it). */
  retire: (shim: PooledShim) => Promise<void>;
}

/**
 * A shim of one key being started: the containers that arrived meanwhile
 * wait for it instead of each starting one of their own.
 */
interface Starting {
  /** Places promised to waiting containers (the starter holds one more). */
  joined: number;
  /** Settles with the started shim, or undefined when its start failed. */
  settled: Promise<PooledShim | undefined>;
  settle: (shim: PooledShim | undefined) => void;
}

/** What {@link ShimPool.starting} gives the container that starts a shim. */
export interface StartTicket {
  /**
   * Reports the outcome: the shim the start gave (as {@link ShimPool.add}
   * recorded it), which then holds a place for every container that
   * waited, or undefined when it failed, which sends them to start their own.
   */
  done(shim: PooledShim | undefined): void;
}

/** The daemon's shared shims; see the module doc. */
export class ShimPool {
  #opts: ShimPoolOptions;
  #byAddress = new Map<string, PooledShim>();
  /** Shim starts in progress, by key: a Deno shim takes 100+ ms to boot, and
   * N containers created at once from an empty pool would otherwise start N. */
  #starting = new Map<string, Starting[]>();

  /** A pool with no shims. */
  constructor(opts: ShimPoolOptions) {
    this.#opts = opts;
  }

  /** True when containers share shims at all. */
  get enabled(): boolean {
    return this.#opts.size > 0;
  }

  /** The shared shim at `address`, if it is one. */
  at(address: string): PooledShim | undefined {
    return this.#byAddress.get(address);
  }

  /** Every shared shim. */
  all(): PooledShim[] {
    return [...this.#byAddress.values()];
  }

  /**
   * Takes a place for one container in a shared shim of `key` with room
   * (the fullest first, so that shims empty out and retire); undefined
   * when there is none.
   */
  take(key: string): PooledShim | undefined {
    let best: PooledShim | undefined;
    for (const s of this.#byAddress.values()) {
      if (s.key !== key || s.retiring || s.tasks >= this.#opts.size) continue;
      if (best === undefined || s.tasks > best.tasks) best = s;
    }
    if (best !== undefined) this.#occupy(best);
    return best;
  }

  /**
   * Finds a container of `key` its shim, in one step (no await between
   * looking and announcing, so two containers never both start one for
   * want of the other's): a place in a running shim with room, else a
   * place in one being started, else a ticket to start one.
   */
  claim(
    key: string,
  ): { shim: PooledShim } | { waiting: Promise<PooledShim | undefined> } | {
    ticket: StartTicket;
  } {
    const shim = this.take(key);
    if (shim !== undefined) return { shim };
    const waiting = this.join(key);
    if (waiting !== undefined) return { waiting };
    return { ticket: this.starting(key) };
  }

  /**
   * Waits for a place in a shim of `key` that another container is
   * starting and has room; undefined at once when none is being started
   * (or all are full), or later when that start failed: then the caller
   * starts one itself.
   */
  join(key: string): Promise<PooledShim | undefined> | undefined {
    const s = this.#starting.get(key)?.find((s) => s.joined + 1 < this.#opts.size);
    if (s === undefined) return undefined;
    s.joined++;
    return s.settled;
  }

  /**
   * Announces that the caller starts a shim of `key`, so that containers
   * arriving meanwhile {@link join} it; the caller must report the outcome
   * with the ticket's `done`, whatever it is.
   */
  starting(key: string): StartTicket {
    let settle!: (shim: PooledShim | undefined) => void;
    const s: Starting = {
      joined: 0,
      settled: new Promise((resolve) => settle = resolve),
      settle: (shim) => settle(shim),
    };
    const list = this.#starting.get(key) ?? [];
    list.push(s);
    this.#starting.set(key, list);
    let reported = false;
    return {
      done: (shim) => {
        if (reported) return;
        reported = true;
        const left = this.#starting.get(key)!.filter((x) => x !== s);
        if (left.length > 0) this.#starting.set(key, left);
        else this.#starting.delete(key);
        if (shim !== undefined) { for (let i = 0; i < s.joined; i++) this.#occupy(shim); }
        s.settle(shim);
      },
    };
  }

  /**
   * Records the shim a container of `key` was just started in, holding
   * that container. A shim's `start` may name a shim already known (its
   * socket is named after the first container's id): that one is counted.
   */
  async add(
    record: PoolRecord,
  ): Promise<PooledShim> {
    const known = this.#byAddress.get(record.address);
    if (known !== undefined) {
      this.#occupy(known);
      return known;
    }
    const shim: PooledShim = { ...record, tasks: 1, retiring: false };
    this.#byAddress.set(record.address, shim);
    try {
      await Deno.mkdir(this.#opts.dir, { recursive: true, mode: 0o700 });
      await Deno.writeTextFile(this.#recordPath(record.address), JSON.stringify(record), {
        mode: 0o600,
      });
    } catch (err) {
      // Only a killed daemon's successor needs it (to stop the shim if it idles then).
      log.warn("cannot record a shared shim", { address: record.address, error: String(err) });
    }
    return shim;
  }

  /** Counts one more container in `shim`, room or not (a pod's container joins its sandbox). */
  hold(shim: PooledShim): void {
    this.#occupy(shim);
  }

  /** Gives a container's place back; a shim left empty idles, then retires. */
  release(shim: PooledShim): void {
    shim.tasks = Math.max(0, shim.tasks - 1);
    if (shim.tasks > 0 || shim.retiring || this.#byAddress.get(shim.address) !== shim) return;
    clearTimeout(shim.idleTimer);
    shim.idleTimer = setTimeout(() => {
      shim.idleTimer = undefined;
      if (shim.tasks === 0 && !shim.retiring) this.#retire(shim);
    }, this.#opts.idleMs);
    Deno.unrefTimer(shim.idleTimer);
  }

  /** Forgets a shim that is gone (its connection closed), and its record. */
  async forget(address: string): Promise<void> {
    const shim = this.#byAddress.get(address);
    if (shim !== undefined) {
      clearTimeout(shim.idleTimer);
      this.#byAddress.delete(address);
    }
    await Deno.remove(this.#recordPath(address)).catch(() => {});
  }

  /**
   * The records a killed daemon left: shared shims it knew. The caller
   * re-adopts those still serving containers ({@link adopt}) and retires
   * the rest.
   */
  async records(): Promise<PoolRecord[]> {
    const out: PoolRecord[] = [];
    try {
      for await (const e of Deno.readDir(this.#opts.dir)) {
        if (!e.name.endsWith(".json")) continue;
        const path = `${this.#opts.dir}/${e.name}`;
        try {
          out.push(JSON.parse(await Deno.readTextFile(path)) as PoolRecord);
        } catch {
          await Deno.remove(path).catch(() => {}); // half-written: no shim to find from it
        }
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
    return out;
  }

  /** Takes back a shared shim found serving `tasks` containers after a restart. */
  adopt(record: PoolRecord, tasks: number): PooledShim {
    const shim: PooledShim = { ...record, tasks, retiring: false };
    this.#byAddress.set(record.address, shim);
    return shim;
  }

  /** Retires every idle shim now (the daemon is stopping; busy ones outlive it). */
  async close(): Promise<void> {
    const idle = this.all().filter((s) => s.tasks === 0 && !s.retiring);
    for (const s of this.all()) clearTimeout(s.idleTimer);
    await Promise.all(idle.map((s) => this.#retire(s)));
  }

  #occupy(shim: PooledShim): void {
    shim.tasks++;
    clearTimeout(shim.idleTimer);
    shim.idleTimer = undefined;
  }

  async #retire(shim: PooledShim): Promise<void> {
    shim.retiring = true;
    try {
      await this.#opts.retire(shim);
    } finally {
      await this.forget(shim.address);
    }
  }

  #recordPath(address: string): string {
    // The socket's own name is already a hash (or short); keep only safe characters.
    const name = address.slice(address.lastIndexOf("/") + 1).replace(/[^A-Za-z0-9_.-]/g, "_");
    return `${this.#opts.dir}/${name}.json`;
  }
}
