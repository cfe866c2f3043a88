#!/bin/sh
# `make install` / `make uninstall`: berth into PREFIX (default /usr/local),
# under DESTDIR when set (staging for a package; nothing is run from there).
#   PREFIX/bin/berth                     the bundle, its shebang on PREFIX/lib/berth/deno
#                                        (or the compiled binary, which needs no deno)
#   PREFIX/bin/containerd-shim-berth-v2  -> berth (how containerd and the daemon find the shim)
#   PREFIX/lib/berth/deno                the pinned Deno the bundle runs on
#   PREFIX/lib/systemd/system/berth.service  contrib/berth.service with PREFIX's paths
#   PREFIX/share/bash-completion/completions/berth  from `berth completion bash`
#   PREFIX/share/doc/berth/README.md     what the unit's Documentation= points at
#   SYSCONFDIR/berth/config.toml         `berth config default`, only when there is none
#                                        (SYSCONFDIR: /etc, where the daemon looks by default)
# Uninstall removes all but the config (it may hold the admin's edits).
set -eu
cd "$(dirname "$0")/.."
action=${1:-install}
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
for p in "$PREFIX" "${SYSCONFDIR:-/etc}"; do
  case "$p" in /*) ;; *) echo "install: PREFIX and SYSCONFDIR must be absolute paths (got $p)" >&2; exit 2 ;; esac
done
BIN=$PREFIX/bin
LIB=$PREFIX/lib/berth
UNIT=$PREFIX/lib/systemd/system/berth.service
COMPLETION=$PREFIX/share/bash-completion/completions/berth
DOC=$PREFIX/share/doc/berth/README.md
CONFIG=${SYSCONFDIR:-/etc}/berth/config.toml
D=$DESTDIR

if [ "$action" = uninstall ]; then
  for f in "$BIN/berth" "$BIN/containerd-shim-berth-v2" "$LIB/deno" "$UNIT" "$COMPLETION" "$DOC"; do
    if [ -e "$D$f" ] || [ -L "$D$f" ]; then rm -f "$D$f" && echo "uninstall: removed $D$f"; fi
  done
  rmdir "$D$LIB" "$D$PREFIX/share/doc/berth" 2>/dev/null || true
  [ -e "$D$CONFIG" ] && echo "uninstall: kept $D$CONFIG (remove it by hand if it is not wanted)"
  exit 0
fi

[ -x bin/berth ] || { echo "install: bin/berth is missing: run make build" >&2; exit 1; }
mkdir -p "$D$BIN" "$D$LIB" "$(dirname "$D$UNIT")" "$(dirname "$D$COMPLETION")" "$(dirname "$D$DOC")"
if [ "$(head -c 2 bin/berth)" = "#!" ]; then
  # A bundle: the same file, its shebang's deno (the clone's) replaced by the installed one.
  deno=$(sed -n '1s/^#!\/usr\/bin\/env -S \([^ ]*\) .*/\1/p' bin/berth)
  [ -x "$deno" ] || { echo "install: bin/berth's shebang names no deno ($deno)" >&2; exit 1; }
  cp "$deno" "$D$LIB/deno.tmp" && chmod 755 "$D$LIB/deno.tmp" && mv "$D$LIB/deno.tmp" "$D$LIB/deno"
  echo "install: $D$LIB/deno ($("$deno" --version | head -1))"
  sed "1s|^#!/usr/bin/env -S [^ ]*|#!/usr/bin/env -S $LIB/deno|" bin/berth >"$D$BIN/berth.tmp"
else
  cp bin/berth "$D$BIN/berth.tmp"
fi
chmod 755 "$D$BIN/berth.tmp" && mv "$D$BIN/berth.tmp" "$D$BIN/berth"
ln -sfn berth "$D$BIN/containerd-shim-berth-v2"
echo "install: $D$BIN/berth and $D$BIN/containerd-shim-berth-v2 -> berth"
sed -e "s|/usr/local/bin/berth|$BIN/berth|g" -e "s|/usr/local/share/doc/berth|$PREFIX/share/doc/berth|g" \
  contrib/berth.service >"$D$UNIT"
cp README.md "$D$DOC"
bin/berth completion bash >"$D$COMPLETION"
echo "install: $D$UNIT, $D$COMPLETION, $D$DOC"
if [ -e "$D$CONFIG" ]; then
  echo "install: kept the existing $D$CONFIG"
else
  mkdir -p "$(dirname "$D$CONFIG")"
  bin/berth config default >"$D$CONFIG.tmp" && mv "$D$CONFIG.tmp" "$D$CONFIG"
  echo "install: $D$CONFIG (berth config default)"
fi
