/**
 * The root lock: one daemon per root directory. An advisory exclusive lock
 * on `<root>/berth.lock`, taken without waiting; the kernel drops it when
 * the holder exits however it exits, so a crash never leaves the root
 * locked. The holder's pid is written inside only to name it in the error
 * a second daemon prints.
 *
 * @module
 */

import { BerthError, Code } from "../errdefs/mod.ts";

/** Name of the lock file inside the root. */
export const LOCK_FILE = "berth.lock";

/** A held root lock. */
export interface RootLock {
  /** The lock file's path. */
  readonly path: string;
  /** Releases the lock (idempotent). */
  release(): void;
}

/**
 * Takes the exclusive lock on `root` (which must exist). When another
 * process holds it: FailedPrecondition naming the root and, when recorded,
 * the holder's pid.
 */
export async function lockRoot(root: string): Promise<RootLock> {
  const path = `${root}/${LOCK_FILE}`;
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  let locked = false;
  try {
    locked = await file.tryLock(true);
    if (!locked) {
      const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
      throw new BerthError(
        Code.FailedPrecondition,
        `root ${root} is in use by another berth daemon` +
          (/^\d+$/.test(holder) ? ` (pid ${holder})` : "") +
          `: ${path} is locked; stop that daemon or give this one another --root`,
      );
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch (err) {
    if (locked) file.unlockSync();
    file.close();
    throw err;
  }
  let held = true;
  return {
    path,
    release() {
      if (!held) return;
      held = false;
      try {
        file.truncateSync(0);
        file.unlockSync();
      } finally {
        file.close();
      }
    },
  };
}
