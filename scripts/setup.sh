#!/bin/sh
# Installs what a fresh Debian 12 machine lacks for building and testing berth.
# Idempotent: each step checks before it acts, so a second run does nothing.
set -eu
cd "$(dirname "$0")/.."
DENO_VERSION=$(sed -n 's/^DENO_VERSION *:= *//p' Makefile)

# Debian packages the build, the tests and the benchmarks use.
PKGS="runc containerd busybox-static protobuf-compiler golang-github-containerd-containerd-dev \
golang-github-containerd-ttrpc-dev docker-registry skopeo umoci hyperfine tini \
containernetworking-plugins iproute2 iptables"
missing=""
for p in $PKGS; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "setup: installing Debian packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q $missing >/dev/null
fi

# Deno, pinned, from the npm registry (the deno package ships the binary).
if [ "$(.tools/node_modules/deno/deno --version 2>/dev/null | head -1 | cut -d' ' -f2)" != "$DENO_VERSION" ]; then
  echo "setup: installing deno $DENO_VERSION into .tools/"
  mkdir -p .tools
  npm install --silent --no-save --no-package-lock --no-audit --no-fund --prefix .tools "deno@$DENO_VERSION"
fi

# npm dependencies named in deno.json, into ./node_modules.
.tools/node_modules/deno/deno install --quiet
