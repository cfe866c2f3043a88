#!/bin/sh
# Installs what a fresh Debian 12 machine lacks for building and testing berth.
# Idempotent: each step checks before it acts, so a second run does nothing.
set -eu
cd "$(dirname "$0")/.."
DENO_VERSION=$(sed -n 's/^DENO_VERSION *:= *//p' Makefile)

# Debian packages the build, the tests and the benchmarks use.
PKGS="runc containerd busybox-static protobuf-compiler golang-github-containerd-containerd-dev \
golang-github-containerd-ttrpc-dev docker-registry skopeo umoci hyperfine tini \
containernetworking-plugins iproute2 iptables prometheus"
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

# Deno, pinned, from the npm registry: the `deno` package's binary comes in
# its per-platform package (@deno/linux-x64-glibc, ...). With npm, npm installs
# it; without (a bare Debian has none), the platform package's tarball is
# fetched directly, checked against the registry's sha1, and unpacked into the
# same place, .tools/node_modules/deno/deno.
DENO="$(pwd)/.tools/node_modules/deno/deno"
if [ "$("$DENO" --version 2>/dev/null | head -1 | cut -d' ' -f2)" != "$DENO_VERSION" ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "setup: installing deno $DENO_VERSION into .tools/ (npm install deno@$DENO_VERSION)"
    mkdir -p .tools
    npm install --silent --no-save --no-package-lock --no-audit --no-fund --prefix .tools "deno@$DENO_VERSION"
  else
    case "$(uname -m)" in
      x86_64) platform=linux-x64-glibc ;;
      aarch64) platform=linux-arm64-glibc ;;
      *) echo "setup: no deno package for $(uname -m) on the npm registry" >&2; exit 1 ;;
    esac
    registry=$(printf '%s' "${npm_config_registry:-https://registry.npmjs.org/}" | sed 's|/*$||')
    if ! command -v curl >/dev/null 2>&1; then
      echo "setup: installing Debian packages: curl ca-certificates (to fetch deno without npm)"
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -q >/dev/null
      apt-get install -y -q curl ca-certificates >/dev/null
    fi
    echo "setup: installing deno $DENO_VERSION into .tools/ (@deno/$platform from $registry, without npm)"
    meta=$(curl -fsSL "$registry/@deno/$platform/$DENO_VERSION")
    field() { printf '%s' "$meta" | tr ',' '\n' | sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" | head -1; }
    tarball=$(field tarball)
    shasum=$(field shasum)
    [ -n "$tarball" ] && [ -n "$shasum" ] || { echo "setup: no tarball for @deno/$platform@$DENO_VERSION at $registry" >&2; exit 1; }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    curl -fsSL -o "$tmp/deno.tgz" "$tarball"
    echo "$shasum  $tmp/deno.tgz" | sha1sum -c --quiet - || { echo "setup: $tarball: sha1 is not $shasum" >&2; exit 1; }
    tar -xzf "$tmp/deno.tgz" -C "$tmp" package/deno
    mkdir -p .tools/node_modules/deno
    chmod 755 "$tmp/package/deno"
    mv "$tmp/package/deno" "$DENO"
    rm -rf "$tmp"
    trap - EXIT
  fi
  "$DENO" --version | head -1 | sed 's/^/setup: /'
fi

# npm dependencies named in deno.json, into ./node_modules (Deno fetches them itself).
"$DENO" install --quiet
