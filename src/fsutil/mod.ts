/**
 * File-system questions Deno has no one call for. No imports, so any mode
 * may load it.
 *
 * @example
 * ```ts
 * if (await exists("/etc/berth/config.toml")) { ... }
 * ```
 * @module
 */

/** Options of {@link exists}. */
export interface ExistsOptions {
  /** Ask about the symlink's target rather than the link itself (default false). */
  followSymlinks?: boolean;
}

/**
 * True when something is at `path` (the link itself unless
 * `followSymlinks`). Only "not found" is false: other errors (permission,
 * I/O) are thrown, since they say nothing about whether the file is there.
 */
export async function exists(path: string, opts: ExistsOptions = {}): Promise<boolean> {
  try {
    await (opts.followSymlinks ? Deno.stat(path) : Deno.lstat(path));
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/** {@link exists}, synchronously (for tests and clean-up paths that cannot await). */
export function existsSync(path: string, opts: ExistsOptions = {}): boolean {
  try {
    if (opts.followSymlinks) Deno.statSync(path);
    else Deno.lstatSync(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}
