/**
 * OCI chain ids: the name of an unpacked layer stack. The first is the
 * bottom layer's diff id; each next one is the sha256 of
 * "<parent chain id> <diff id>".
 *
 * @module
 */

/** The chain ids of `diffIds`, bottom layer first (the last names the whole rootfs). */
export async function chainIds(diffIds: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const d of diffIds) {
    if (out.length === 0) {
      out.push(d);
      continue;
    }
    const text = new TextEncoder().encode(`${out[out.length - 1]} ${d}`);
    const sum = new Uint8Array(await crypto.subtle.digest("SHA-256", text));
    out.push("sha256:" + Array.from(sum, (b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return out;
}

/** The chain id of the whole stack ("" for no layers). */
export async function chainId(diffIds: readonly string[]): Promise<string> {
  return (await chainIds(diffIds)).at(-1) ?? "";
}
