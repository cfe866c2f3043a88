#!/bin/sh
# Writes bin/berth and its alias bin/containerd-shim-berth-v2.
# A compiled binary when `deno compile` can get its runtime base (it downloads
# one, or takes DENORT_BIN); otherwise a single-file bundle run by the repo's
# pinned deno through a shebang. Both behave the same (see src/spawn selfCommand).
set -eu
cd "$(dirname "$0")/.."
DENO="$(pwd)/.tools/node_modules/deno/deno"
# RUNTIME_FLAGS of src/spawn/flags.ts (why each is there is said there).
FLAGS=$("$DENO" eval --no-config 'import { RUNTIME_FLAGS } from "./src/spawn/flags.ts"; console.log(RUNTIME_FLAGS.join(" "))')
[ -n "$FLAGS" ] || { echo "build: error: cannot read RUNTIME_FLAGS from src/spawn/flags.ts" >&2; exit 1; }
mkdir -p bin
rm -f bin/berth bin/containerd-shim-berth-v2 bin/berth.tmp
form=""
if [ "${BERTH_BUILD:-auto}" != "bundle" ] && "$DENO" compile $FLAGS --output bin/berth.tmp mod.ts >bin/compile.log 2>&1; then
  mv bin/berth.tmp bin/berth
  form="compiled binary"
else
  rm -f bin/berth.tmp
  # --minify: half the size, and ~10 ms less to load and compile at each start
  # (stack traces are the bundle's; `deno run -A mod.ts` shows the sources).
  "$DENO" bundle --quiet --platform deno --minify --output bin/berth.js mod.ts
  # A bundle evaluates every static import of a node: module at start, whatever
  # the mode, and some cost tens of ms each: berth imports them dynamically
  # where they are used. deno bundle adds one itself, node:module, whose
  # createRequire serves npm CommonJS packages (tar-stream): make that require
  # on first use too.
  sed -E -e 's/import ?\{ ?createRequire as __deno_internal_createRequire ?\} ?from ?"node:module";/var __deno_internal_require;/' \
    -e 's/var ([A-Za-z_$][A-Za-z0-9_$]*) ?= ?__deno_internal_createRequire\(import\.meta\.url\);/var \1 = (id) => (__deno_internal_require ??= process.getBuiltinModule("node:module").createRequire(import.meta.url))(id);/' \
    bin/berth.js > bin/berth.lazy.js
  mv bin/berth.lazy.js bin/berth.js
  # The rewrite names esbuild's internals: when a Deno upgrade renames them,
  # it silently matches nothing, and every start pays for node:module. Stop.
  if grep -q '__deno_internal_createRequire' bin/berth.js; then
    echo "build: error: the bundle's createRequire was not made lazy (deno bundle's output changed): fix the sed rewrite in scripts/build.sh" >&2
    rm -f bin/berth.js
    exit 1
  fi
  # Some bundles leave CommonJS requires to esbuild's polyfill instead, which
  # throws "Dynamic require of ... is not supported" unless a `require` is in
  # scope: give it the same lazy one (it looks the name up when called).
  if grep -q 'Dynamic require of' bin/berth.js; then
    { echo 'var require = (id) => (globalThis.__berthRequire ??= process.getBuiltinModule("node:module").createRequire(import.meta.url))(id);'; cat bin/berth.js; } > bin/berth.lazy.js
    mv bin/berth.lazy.js bin/berth.js
  fi
  eager=$(grep -oE '(^|[;}])import[^;("'"'"']*from ?"node:[^"]*"' bin/berth.js | sed -E 's/.*"(node:[^"]*)"/\1/' | sort -u | paste -sd ' ' -)
  if [ -n "$eager" ]; then
    echo "build: error: bin/berth would evaluate $eager at every start, in every mode (tens of ms each): import dynamically where used" >&2
    rm -f bin/berth.js
    exit 1
  fi
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
