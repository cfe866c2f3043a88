/**
 * The CRI plugin's settings, read from containerd's section
 * `[plugins."io.containerd.grpc.v1.cri"]` (the config module has checked
 * the types already) with containerd 1.6's defaults filled in.
 * @module
 */

import { invalidArgument } from "../errdefs/mod.ts";

/** What the CRI plugin runs with. */
export interface CriConfig {
  /** The image every pod's sandbox (pause) container runs. */
  sandboxImage: string;
  /** Host the streaming server listens on. */
  streamServerAddress: string;
  /** Port of the streaming server ("0": a free one). */
  streamServerPort: string;
  /** Directory of the CNI plugin binaries. */
  cniBinDir: string;
  /** Directory of the CNI network configurations. */
  cniConfDir: string;
  /** Clamp requested oom_score_adj values to the daemon's own (no CAP_SYS_RESOURCE). */
  restrictOomScoreAdj: boolean;
  /** Pin pod network namespaces under the state directory instead of /var/run/netns. */
  netnsMountsUnderStateDir: boolean;
  /** The snapshotter containers' root file systems come from. */
  snapshotter: string;
}

/** containerd 1.6's sandbox image default. */
export const DEFAULT_SANDBOX_IMAGE = "registry.k8s.io/pause:3.6";

function text(section: Record<string, unknown>, key: string, fallback: string): string {
  const v = section[key];
  return typeof v === "string" && v !== "" ? v : fallback;
}

/** The settings in `section` (the parsed TOML table), defaults for what it leaves out. */
export function criConfig(section: Record<string, unknown>): CriConfig {
  const cni = (section.cni ?? {}) as Record<string, unknown>;
  const containerd = (section.containerd ?? {}) as Record<string, unknown>;
  const port = text(section, "stream_server_port", "0");
  if (!/^\d+$/.test(port) || Number(port) > 65535) {
    throw invalidArgument(
      `plugins."io.containerd.grpc.v1.cri".stream_server_port: ${
        JSON.stringify(port)
      } is not a port number`,
    );
  }
  return {
    sandboxImage: text(section, "sandbox_image", DEFAULT_SANDBOX_IMAGE),
    streamServerAddress: text(section, "stream_server_address", "127.0.0.1"),
    streamServerPort: port,
    cniBinDir: text(cni, "bin_dir", "/opt/cni/bin"),
    cniConfDir: text(cni, "conf_dir", "/etc/cni/net.d"),
    restrictOomScoreAdj: section.restrict_oom_score_adj === true,
    netnsMountsUnderStateDir: section.netns_mounts_under_state_dir === true,
    snapshotter: text(containerd, "snapshotter", "overlayfs"),
  };
}
