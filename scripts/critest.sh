#!/bin/bash
# `make critest`: cri-tools' conformance suite (critest v1.26.1) against berth's CRI plugin,
# offline. Starts a registry of critest's images (shared/tools/cri/images.sh) on a free loopback
# port and `bin/berth daemon` on temporary paths with containerd's CRI settings for it (registry
# mirrors for registry.k8s.io and gcr.io, a bridge + portmap conflist of its own, restricted
# oom_score_adj), runs critest, prints
#   critest: P passed, F failed, S skipped of N (T s)
# and the failed specs, then stops what it started (by pid) and removes what it made: temp dir,
# pods' netns (under the temp state dir), its bridge, the CNI chains it added, ip_forward.
# Exit 0 when the run completed, whatever the specs say; non-zero when the harness broke.
#
# Env: CRI_TOOLS  directory with critest, crictl and cri/ (default ../shared/tools of the repo,
#                 or of the main worktree); missing critest: "skipped", exit 0.
#      CRI_REG    images.sh's build/storage dir to reuse (default: a temp one, removed after).
#      CRITEST_LOG  keep critest's full log at this path.
#      CRITEST_JUNIT keep its JUnit report (per-spec times) at this path.
#      CRITEST_ARGS extra critest arguments, e.g. "--ginkgo.focus=Image".
set -u
cd "$(dirname "$0")/.."
REPO=$PWD

# tini -s reaps the orphans (detached shims, the registry) that this machine's pid 1 does not.
if [ -z "${BERTH_CRITEST_REAPER:-}" ]; then
  BERTH_CRITEST_REAPER=1 exec tini -s -- "$0" "$@"
fi

if [ -z "${CRI_TOOLS:-}" ]; then
  CRI_TOOLS=$REPO/../shared/tools
  main=$(dirname "$(git rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo .)")
  [ -x "$CRI_TOOLS/critest" ] || CRI_TOOLS=$main/../shared/tools
fi
if [ ! -x "$CRI_TOOLS/critest" ]; then
  echo "skipped: critest not found"
  exit 0
fi
CRI_TOOLS=$(cd "$CRI_TOOLS" && pwd)
export CRI_TOOLS
for t in crictl cri/images.sh cri/critest.sh; do
  [ -x "$CRI_TOOLS/$t" ] || { echo "critest.sh: $CRI_TOOLS/$t missing" >&2; exit 1; }
done
[ -x bin/berth ] || { echo "critest.sh: bin/berth missing (make build)" >&2; exit 1; }

log() { echo "critest.sh: $*" >&2; }

DIR=$(mktemp -d /tmp/berth-critest.XXXXXX)
chmod 711 "$DIR"
REG=${CRI_REG:-$DIR/reg}
TAG=$(head -c3 /dev/urandom | od -An -tx1 | tr -d ' \n')
BRIDGE=bcritest$TAG
SOCK=$DIR/state/berth.sock
DAEMON_PID=
REG_PORT=
SUBNET_PREFIX=
FWD_BEFORE=$(sysctl -n net.ipv4.ip_forward)
CHAINS_BEFORE=$(iptables -t nat -S 2>/dev/null | awk '$1 == "-N" {print $2}' | sort)

crictl_() { "$CRI_TOOLS/crictl" --timeout 60s -r "unix://$SOCK" -i "unix://$SOCK" "$@"; }

# Removes nat rules jumping to chain $1, then the chain.
drop_chain() {
  local rule
  iptables -t nat -S | awk -v c="$1" '$1 == "-A" && $0 ~ (" -j " c "( |$)") {sub(/^-A/, "-D"); print}' |
    while read -r rule; do eval "iptables -t nat $rule" || true; done
  iptables -t nat -F "$1" 2>/dev/null && iptables -t nat -X "$1" 2>/dev/null
}

cleanup() {
  local p m c
  if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
    # through the CRI first: containers stop, CNI DEL runs, netns are unpinned, shims exit
    crictl_ rmp -fa >/dev/null 2>&1 || true
    kill "$DAEMON_PID"
    for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$DAEMON_PID" 2>/dev/null && { log "daemon did not stop; SIGKILL"; kill -9 "$DAEMON_PID"; }
    wait "$DAEMON_PID" 2>/dev/null
  fi
  # leftovers of a failed run: containers under our runc root, processes on our paths (shims)
  for c in $(runc --root "$DIR/runc/k8s.io" list -q 2>/dev/null); do
    runc --root "$DIR/runc/k8s.io" delete --force "$c" >/dev/null 2>&1 || true
  done
  if [ -n "$REG_PORT" ]; then CRI_REG=$REG "$CRI_TOOLS/cri/images.sh" "$REG_PORT" stop 2>/dev/null; fi
  for p in $(grep -lsF "$DIR/" /proc/[0-9]*/cmdline | cut -d/ -f3); do
    [ "$p" != "$$" ] && kill -9 "$p" 2>/dev/null && log "killed leftover process $p"
  done
  for _ in 1 2 3; do
    m=$(awk -v d="$DIR/" 'index($2, d) == 1 {print $2}' /proc/self/mounts | sort -r)
    [ -z "$m" ] && break
    for p in $m; do umount "$p" 2>/dev/null || umount -l "$p" 2>/dev/null || true; done
  done
  ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
  # portmap's chains: per-pod ones of our subnet, then the shared ones if we made them and they are empty
  for c in $(iptables -t nat -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^CNI-DN-/ {print $2}'); do
    [ -n "$SUBNET_PREFIX" ] && iptables -t nat -S "$c" | grep -q "$SUBNET_PREFIX\." && drop_chain "$c"
  done
  if ! grep -qx CNI-HOSTPORT-DNAT <<<"$CHAINS_BEFORE" &&
    ! iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -q '^-A'; then
    for c in CNI-HOSTPORT-DNAT CNI-HOSTPORT-SETMARK CNI-HOSTPORT-MASQ; do drop_chain "$c"; done
  fi
  [ "$(sysctl -n net.ipv4.ip_forward)" = "$FWD_BEFORE" ] ||
    sysctl -qw net.ipv4.ip_forward="$FWD_BEFORE"
  rm -rf "$DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# a loopback port and a /24 that nothing here uses
while :; do
  REG_PORT=$((20000 + RANDOM % 20000))
  ss -ltnH "sport = :$REG_PORT" | grep -q . || break
done
routes=$(ip -4 route show)
while :; do
  SUBNET_PREFIX=10.203.$((1 + RANDOM % 254))
  grep -qF "$SUBNET_PREFIX." <<<"$routes" || break
done

CRI_REG=$REG "$CRI_TOOLS/cri/images.sh" "$REG_PORT" >"$DIR/images.log" 2>&1 ||
  { log "images.sh failed:"; tail -20 "$DIR/images.log" >&2; exit 1; }

mkdir -p "$DIR/net.d" "$DIR/ipam" "$DIR/runc"
cat >"$DIR/net.d/10-critest.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "berth-critest-$TAG",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$SUBNET_PREFIX.0/24" }]],
        "routes": [{ "dst": "0.0.0.0/0" }],
        "dataDir": "$DIR/ipam"
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
# oom_score_adj: without CAP_SYS_RESOURCE runc cannot lower it to the sandbox's -998.
restrict_oom=false
(((0x$(awk '/^CapBnd/ {print $2}' /proc/self/status) >> 24) & 1)) || restrict_oom=true
mirror="endpoint = [\"http://127.0.0.1:$REG_PORT\"]"
cat >"$DIR/config.toml" <<EOF
version = 2
root = "$DIR/root"
state = "$DIR/state"
[grpc]
address = "$SOCK"
[plugins."io.containerd.grpc.v1.cri"]
sandbox_image = "registry.k8s.io/pause:3.6"
stream_server_address = "127.0.0.1"
stream_server_port = "0"
restrict_oom_score_adj = $restrict_oom
netns_mounts_under_state_dir = true
[plugins."io.containerd.grpc.v1.cri".cni]
bin_dir = "/usr/lib/cni"
conf_dir = "$DIR/net.d"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth]
runtime_type = "io.containerd.berth.v2"
[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.berth.options]
Root = "$DIR/runc"
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."registry.k8s.io"]
$mirror
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."gcr.io"]
$mirror
[plugins."io.containerd.grpc.v1.cri".registry.mirrors."127.0.0.1:$REG_PORT"]
$mirror
EOF

bin/berth daemon --config "$DIR/config.toml" >"$DIR/daemon.log" 2>&1 </dev/null &
DAEMON_PID=$!
ready=
for _ in $(seq 150); do
  kill -0 "$DAEMON_PID" 2>/dev/null || break
  if [ -S "$SOCK" ] && crictl_ info 2>/dev/null |
    jq -e '.status.conditions[] | select(.type == "NetworkReady") | .status' >/dev/null; then
    ready=1
    break
  fi
  sleep 0.2
done
[ -n "$ready" ] || { log "berth daemon did not get ready:"; tail -20 "$DIR/daemon.log" >&2; exit 1; }

start=$(date +%s)
# shellcheck disable=SC2086
"$CRI_TOOLS/cri/critest.sh" "unix://$SOCK" "$DIR/critest.log" ${CRITEST_ARGS:-} >"$DIR/summary.txt" 2>&1
secs=$(($(date +%s) - start))
[ -n "${CRITEST_LOG:-}" ] && cp "$DIR/critest.log" "$CRITEST_LOG"
[ -n "${CRITEST_JUNIT:-}" ] && cp "$DIR/critest.junit.xml" "$CRITEST_JUNIT"
ran=$(grep -E '^Ran [0-9]+ of [0-9]+ Specs' "$DIR/critest.log" | tail -1)
counts=$(grep -E '(SUCCESS|FAIL)! -- [0-9]+ Passed' "$DIR/critest.log" | tail -1)
if [ -z "$ran" ] || [ -z "$counts" ]; then
  log "critest did not finish:"
  tail -20 "$DIR/critest.log" >&2
  exit 1
fi
num() { sed -E "s/.*[^0-9]([0-9]+) $1.*/\1/" <<<"$counts"; }
total=$(sed -E 's/^Ran [0-9]+ of ([0-9]+) Specs.*/\1/' <<<"$ran")
echo "critest: $(num Passed) passed, $(num Failed) failed, $(num Skipped) skipped of $total ($secs s)"
grep -E '^\[(FAIL|PANICKED|TIMEDOUT|INTERRUPTED)\]' "$DIR/summary.txt" | sed 's/^/  /'
exit 0
