/**
 * OCI platforms, as containerd's platforms package has them: the default is
 * the host's own (what `Deno.build` says, in OCI's words), and an index
 * entry is chosen by matching its platform against the wanted one.
 *
 * @module
 */

/** An OCI platform as indexes and image configs describe it. */
export interface Platform {
  os: string;
  architecture: string;
  variant?: string;
}

// Deno's names for CPU architectures, in OCI's (GOARCH) words.
const OCI_ARCH: Readonly<Record<string, string>> = { x86_64: "amd64", aarch64: "arm64" };

/** The host's platform in OCI terms, e.g. linux/amd64 or linux/arm64/v8. */
export function hostPlatform(): Platform {
  const architecture = OCI_ARCH[Deno.build.arch] ?? Deno.build.arch;
  // containerd normalises arm64 to variant v8.
  return architecture === "arm64"
    ? { os: Deno.build.os, architecture, variant: "v8" }
    : { os: Deno.build.os, architecture };
}

/** The platform berth pulls, unpacks and runs by default: the host's. */
export const DEFAULT_PLATFORM: Readonly<Platform> = hostPlatform();

/**
 * True when an index entry's `platform` suits `want`. Entries with no
 * platform match (single-manifest OCI layouts leave it out); a missing os
 * is taken as linux; a variant is compared only when both name one.
 */
export function matchPlatform(
  p: Partial<Platform> | undefined,
  want: Platform = DEFAULT_PLATFORM,
): boolean {
  if (!p) return true;
  if ((p.os ?? "linux") !== want.os || p.architecture !== want.architecture) return false;
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

/** "os/arch[/variant]" of `p`, as containerd's platforms.Format ("unknown" for a missing part). */
export function formatPlatform(p: Partial<Platform>): string {
  return [p.os || "unknown", p.architecture || "unknown", ...(p.variant ? [p.variant] : [])]
    .join("/");
}
