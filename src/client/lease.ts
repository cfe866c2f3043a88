/**
 * Client-side leases, as containerd's client WithLease: what calls made
 * under the lease create is kept from garbage collection until the lease
 * is deleted (or, if the client dies, until it expires).
 * @module
 */

import { Leases } from "../gen/containerd/services/leases/v1/leases_pb.ts";
import type { Connection } from "./connection.ts";

// containerd's client default: outlives any create, yet a lease whose client died goes by itself.
const LEASE_EXPIRY_MS = 24 * 3600 * 1000;

/**
 * Runs `fn` under a fresh lease, deleted when it ends (containerd's
 * client WithLease): what calls made with the lease create, such as a
 * snapshot prepared but not yet named by a container record, is kept from
 * a garbage collection that runs in between (after other clients' deletes).
 */
export async function withLease<T>(
  conn: Connection,
  fn: (lease: string) => Promise<T>,
): Promise<T> {
  const id = `berth-client-${crypto.randomUUID()}`;
  const expire = new Date(Date.now() + LEASE_EXPIRY_MS).toISOString();
  await conn.service(Leases).create({ id, labels: { "containerd.io/gc.expire": expire } });
  try {
    return await fn(id);
  } finally {
    // Once the container record exists it holds the snapshot itself.
    await conn.service(Leases).delete({ id }).catch(() => {});
  }
}
