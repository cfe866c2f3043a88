/**
 * containerd's mounts (type, source, options) made real: a container's root
 * filesystem from the snapshotter's overlay or bind mounts, and taking it
 * down again. Used by the shim and by `berth images mount`.
 *
 * @example
 * ```ts
 * await mountAll([{ type: "overlay", source: "overlay", options: ["lowerdir=/l", "upperdir=/u", "workdir=/w"] }], "/run/x/rootfs");
 * await unmountAll("/run/x/rootfs");
 * ```
 * @module
 */

export { mountAll, type MountSpec, parseMountOptions, unmountAll } from "./mount.ts";
