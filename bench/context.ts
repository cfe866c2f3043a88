/**
 * What every workload gets: the parameters of this run (full or --quick),
 * the two engines, the runc floor and the test images.
 * @module
 */

import type { Engine } from "./engines.ts";
import type { RuncFloor } from "./runc_floor.ts";
import type { TestImage } from "../tests/support/image.ts";
import type { Figure } from "./figures.ts";

/** How much each workload does. */
export interface Params {
  /** Sequential `run --rm` per contender (workload 1, 6). */
  runN: number;
  /** Containers per parallel batch (workload 2). */
  parallelN: number;
  parallelRounds: number;
  /** Running containers for the memory figures (workload 3). */
  memN: number;
  memRounds: number;
  /** Containers per group shim. */
  groupSize: number;
  /** Container counts of the node total (workload 8). */
  nodeNs: number[];
  /** Size and layers of the generated image (workload 5). */
  importMB: number;
  importLayers: number;
  importRounds: number;
  /** Length of one throughput measurement (workloads 4, 6). */
  rpcDurationMs: number;
  rpcRounds: number;
  /** Client invocations per contender (workload 7). */
  startupRounds: number;
  /** CRI pod lifecycles per side, and pods of 2 containers for the memory figure (workload 9). */
  criRounds: number;
  criPods: number;
}

/** Parameters of a full run (`make bench`). */
export const FULL: Params = {
  runN: 50,
  parallelN: 50,
  parallelRounds: 5,
  memN: 50,
  memRounds: 2,
  groupSize: 10,
  nodeNs: [1, 10, 50],
  importMB: 200,
  importLayers: 5,
  importRounds: 3,
  rpcDurationMs: 2000,
  rpcRounds: 3,
  startupRounds: 20,
  criRounds: 10,
  criPods: 20,
};

/**
 * Parameters of a smoke run (`--quick`): every workload, little of each
 * (groups of 3 instead of 10, so grouping is still exercised), to show the
 * harness works, not to be quoted.
 */
export const QUICK: Params = {
  runN: 3,
  parallelN: 6,
  parallelRounds: 1,
  memN: 6,
  memRounds: 1,
  groupSize: 3,
  nodeNs: [1, 4],
  importMB: 16,
  importLayers: 2,
  importRounds: 1,
  rpcDurationMs: 300,
  rpcRounds: 2,
  startupRounds: 2,
  criRounds: 1,
  criPods: 2,
};

/** Everything a workload needs. */
export interface BenchContext {
  params: Params;
  quick: boolean;
  repoRoot: string;
  /** The run's copy of bin/ (berth and containerd-shim-berth-v2); see snapshotBerth. */
  binDir: string;
  /** The run's temporary directory (images, registry storage ...). */
  tmp: string;
  containerd: Engine;
  berth: Engine;
  runc: RuncFloor;
  busybox: TestImage;
  /**
   * Why berth's daemon cannot run a container now (the busybox import or a
   * first `run --rm` probe failed), or null. Checked once, so a berth that
   * cannot run containers costs one failure, not one per workload.
   */
  berthCannotRun: string | null;
  /** Daemon RSS samples (KiB) taken right after start-up and the busybox import. */
  idleRss: { containerd: number[]; berth: number[] };
  /** Progress lines (to stderr, not the report). */
  progress(msg: string): void;
  /**
   * Registers clean-up to run when the run ends, however it ends (also on
   * SIGINT), and a directory whose absence is then checked.
   */
  defer(stop: () => Promise<void>, dir?: string): void;
}

/** A workload: a number, a name, and the figures it measures. */
export interface Workload {
  id: number;
  name: string;
  run(ctx: BenchContext): Promise<Figure[]>;
}

/** Why berth's daemon cannot run a container workload now, or null when it can. */
export function berthBlocked(ctx: BenchContext): string | null {
  return ctx.berth.unavailable ?? ctx.berthCannotRun;
}
