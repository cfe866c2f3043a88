// Choosing one platform's manifest from an index: berth runs linux/amd64
// only, so this is a small matcher rather than containerd's full platforms
// package.

/** An OCI platform as indexes describe it. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

/** The platform berth runs containers for. */
export const DEFAULT_PLATFORM: Platform = { os: "linux", architecture: "amd64" };

/**
 * True when an index entry's `platform` suits `want`. Entries with no
 * platform match (single-manifest OCI layouts leave it out); amd64 has no
 * variants in use beyond "v1", so a variant is compared only when both name one.
 */
export function matchPlatform(p: Platform | undefined, want: Platform = DEFAULT_PLATFORM): boolean {
  if (!p) return true;
  if (p.os !== want.os || p.architecture !== want.architecture) return false;
  if (want.variant && p.variant && want.variant !== p.variant) return false;
  return true;
}

/** Parses "os/arch[/variant]". */
export function parsePlatform(text: string): Platform {
  const [os, architecture, variant] = text.split("/");
  if (!os || !architecture) {
    throw new Error(`invalid platform ${JSON.stringify(text)}: want os/arch[/variant]`);
  }
  return variant ? { os, architecture, variant } : { os, architecture };
}

/** "os/arch[/variant]" of `p`. */
export function formatPlatform(p: Platform): string {
  return [p.os, p.architecture, ...(p.variant ? [p.variant] : [])].join("/");
}
