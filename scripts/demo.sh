#!/bin/bash
# make demo: the main job, end to end, with nothing outside the repo touched
# but the runtime's state: a daemon on ./.demo, a busybox image built from
# Debian's busybox-static with `images import --from-dir`, a container run.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO="$(pwd)/.demo"
BERTH="$(pwd)/bin/berth"
ADDR="$DEMO/berth.sock"
export BERTH_ADDRESS="$ADDR"
# Shim sockets follow the daemon: they go to $DEMO/state/s.
mkdir -p "$DEMO"

say() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

daemon_pid=""
stop_daemon() {
  if [ -n "$daemon_pid" ] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" 2>/dev/null || true
    echo "daemon stopped"
  fi
}
trap stop_daemon EXIT

say "berth daemon --root $DEMO/root --state $DEMO/state --address $ADDR &"
"$BERTH" daemon --root "$DEMO/root" --state "$DEMO/state" --address "$ADDR" --log-level warn &
daemon_pid=$!
for _ in $(seq 1 200); do
  "$BERTH" version >/dev/null 2>&1 && break
  sleep 0.05
done

# What an interrupted earlier demo may have left.
for id in hello sleeper; do
  "$BERTH" tasks delete --force "$id" >/dev/null 2>&1 || true
  "$BERTH" containers rm "$id" >/dev/null 2>&1 || true
done

say "berth version"
"$BERTH" version

# A busybox root filesystem, made from Debian's busybox-static.
rootfs="$DEMO/busybox-rootfs"
if [ ! -x "$rootfs/bin/busybox" ]; then
  mkdir -p "$rootfs/bin" "$rootfs/etc" "$rootfs/tmp" "$rootfs/proc" "$rootfs/sys" "$rootfs/dev"
  cp /bin/busybox "$rootfs/bin/busybox"
  for applet in $(/bin/busybox --list); do
    [ "$applet" = busybox ] || ln -sf busybox "$rootfs/bin/$applet"
  done
  echo 'root:x:0:0:root:/root:/bin/sh' > "$rootfs/etc/passwd"
  echo 'root:x:0:' > "$rootfs/etc/group"
fi

say "berth images import --from-dir $rootfs docker.io/library/busybox:demo"
"$BERTH" images import --from-dir "$rootfs" docker.io/library/busybox:demo

say "berth images ls"
"$BERTH" images ls

say "berth run --rm docker.io/library/busybox:demo hello echo 'hello from a berth container'"
"$BERTH" run --rm docker.io/library/busybox:demo hello echo 'hello from a berth container'

say "berth run -d docker.io/library/busybox:demo sleeper sleep 300"
"$BERTH" run -d docker.io/library/busybox:demo sleeper sleep 300

say "berth tasks ls"
"$BERTH" tasks ls

say "berth tasks exec --exec-id e1 sleeper uname -a"
"$BERTH" tasks exec --exec-id e1 sleeper uname -a

say "berth tasks kill -s SIGKILL sleeper && berth tasks delete sleeper && berth containers rm sleeper"
"$BERTH" tasks kill -s SIGKILL sleeper
for _ in $(seq 1 100); do
  "$BERTH" tasks ls | grep -q 'sleeper.*STOPPED' && break
  sleep 0.05
done
# As ctr's, tasks delete exits with the task's status: 137 here (128 + SIGKILL).
"$BERTH" tasks delete sleeper || echo "(tasks delete exited $?: the task's exit status)"
"$BERTH" containers rm sleeper

say "berth containers ls"
"$BERTH" containers ls
