/**
 * Where a berth daemon lives when nobody says otherwise, as containerd's
 * defaults package: its root and state directories, its gRPC socket, and the
 * ttrpc socket beside it. No imports, so the client and `berth publish` can
 * read these without loading the daemon's configuration code.
 *
 * @example
 * ```ts
 * ttrpcSocket(DEFAULT_ADDRESS); // "/run/berth/berth.sock.ttrpc"
 * ```
 * @module
 */

/** The daemon's persistent data (metadata database, content, snapshots). */
export const DEFAULT_ROOT = "/var/lib/berth";
/** The daemon's runtime state (sockets, bundles); gone at reboot. */
export const DEFAULT_STATE = "/run/berth";
/** The config file the daemon reads when none is named (only if it exists). */
export const DEFAULT_CONFIG_PATH = "/etc/berth/config.toml";
/** The daemon's gRPC socket. */
export const DEFAULT_ADDRESS = `${DEFAULT_STATE}/berth.sock`;

/** The snapshotter used when a request or a command names none. */
export const DEFAULT_SNAPSHOTTER = "overlayfs";

/** The ttrpc socket for a daemon address: `<address>.ttrpc`, unless it already is one. */
export function ttrpcSocket(address: string): string {
  return address.endsWith(".ttrpc") ? address : `${address}.ttrpc`;
}
