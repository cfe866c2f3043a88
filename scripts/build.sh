#!/bin/sh
# Writes bin/berth and its alias bin/containerd-shim-berth-v2.
# A compiled binary when `deno compile` can get its runtime base (it downloads
# one, or takes DENORT_BIN); otherwise a single-file bundle run by the repo's
# pinned deno through a shebang. Both behave the same (see src/spawn selfCommand).
set -eu
cd "$(dirname "$0")/.."
DENO="$(pwd)/.tools/node_modules/deno/deno"
FLAGS="-A --quiet --no-prompt"
mkdir -p bin
rm -f bin/berth bin/containerd-shim-berth-v2 bin/berth.tmp
form=""
if [ "${BERTH_BUILD:-auto}" != "bundle" ] && "$DENO" compile $FLAGS --output bin/berth.tmp mod.ts >/tmp/berth-compile.log 2>&1; then
  mv bin/berth.tmp bin/berth
  form="compiled binary"
else
  rm -f bin/berth.tmp
  "$DENO" bundle --quiet --platform deno --output bin/berth.js mod.ts
  # --ext=js: the file has no extension, and deno would otherwise transpile it as
  # TypeScript on every start (~90 ms here).
  { echo "#!/usr/bin/env -S $DENO run $FLAGS --no-config --ext=js"; cat bin/berth.js; } > bin/berth.tmp
  rm -f bin/berth.js
  chmod +x bin/berth.tmp
  mv bin/berth.tmp bin/berth
  form="bundle ($(basename "$DENO") $(sed -n 's/^DENO_VERSION *:= *//p' Makefile) via shebang)"
fi
ln -s berth bin/containerd-shim-berth-v2
echo "build: bin/berth is a $form"
