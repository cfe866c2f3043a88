/**
 * The Deno runtime flags of every form of berth, in one place. No imports:
 * scripts/build.sh evaluates this file alone to read them.
 *
 * @module
 */

/**
 * Flags berth's Deno runtime always runs with; scripts/build.sh reads them
 * from here into the bundle's shebang (and a compiled binary) and
 * selfCommand passes them when berth re-executes itself, so all forms behave the same.
 * `--max-semi-space-size=1` (MB): a young generation of 2 MB instead of up
 * to ~6 MB, all of it resident once used: 1.5-3 MB less per shim and
 * daemon, with ttrpc calls/s unchanged as measured (bench/ttrpc.ts).
 * `--expose-gc`: the daemon collects garbage whose buffers outlive their
 * use (an image import leaves ~3-4 MB of dead ArrayBuffers that V8 sees no
 * reason to collect in a small heap); see memoryTidier in src/cmd/daemon.ts.
 */
export const RUNTIME_FLAGS: readonly string[] = [
  "-A",
  "--quiet",
  "--no-prompt",
  "--v8-flags=--max-semi-space-size=1,--expose-gc",
];
