#!/bin/sh
# make check-fresh: `make setup` (then `make build`) on a bare Debian 12, made
# here with debootstrap (minbase, plus only make and git) from the mirror apt
# already uses, in a chroot under /var/tmp. The repo goes in as a clone of
# this one's committed HEAD. setup runs twice: the second must install
# nothing. Everything is removed afterwards: processes left in the chroot are
# killed by pid, its mounts unmounted, the directory deleted.
#
# Downloads go through this machine's apt package cache (/var/cache/apt/archives,
# or BERTH_FRESH_APT_CACHE; empty to turn it off): debootstrap keeps its .debs
# there and the chroot's apt sees it bind-mounted. Only the downloads are
# shared: every package is still unpacked and configured in the fresh root,
# from the same Debian mirror and indexes. It makes the check fast enough for
# `make test` (tests/fresh_test.ts).
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)
SUITE=bookworm
# The first Debian mirror of this machine's apt sources (deb822 or one-line form).
MIRROR=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null |
  sed -n 's|^URIs: *\(http[^ ]*/debian\)/*$|\1|p' | head -1)
[ -n "$MIRROR" ] || MIRROR=$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list |
  awk '$2 ~ /\/debian\/?$/ { print $2; exit }')
MIRROR=${MIRROR:-http://deb.debian.org/debian}
APT_CACHE=${BERTH_FRESH_APT_CACHE-/var/cache/apt/archives}
[ -z "$APT_CACHE" ] || [ -d "$APT_CACHE" ] || APT_CACHE=

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "check-fresh: installing Debian package: debootstrap"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
fi

work=$(mktemp -d /var/tmp/berth-fresh-XXXXXX)
R=$work/root
cleanup() {
  status=$?
  # Processes whose root is the chroot (anything setup's packages started).
  for p in /proc/[0-9]*; do
    case "$(readlink "$p/root" 2>/dev/null)" in
      "$R" | "$R"/*) kill -9 "${p#/proc/}" 2>/dev/null || true ;;
    esac
  done
  # Mounts under the chroot, deepest first.
  for m in $(awk -v r="$R" '$2 == r || index($2, r "/") == 1 { print $2 }' /proc/mounts | sort -r); do
    umount "$m" 2>/dev/null || umount -l "$m"
  done
  if awk -v r="$R" '$2 == r || index($2, r "/") == 1 { found = 1 } END { exit !found }' /proc/mounts; then
    echo "check-fresh: mounts left under $R; not deleting it" >&2
    exit 1
  fi
  rm -rf --one-file-system "$work"
  exit $status
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started=$(date +%s)
echo "check-fresh: debootstrap --variant=minbase $SUITE from $MIRROR into $R"
debootstrap --variant=minbase ${APT_CACHE:+--cache-dir="$APT_CACHE"} "$SUITE" "$R" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -20 "$work/debootstrap.log" >&2
  exit 1
}
cp /etc/resolv.conf "$R/etc/resolv.conf"
# This machine's own certificate authorities (a network that inspects TLS has
# one): ca-certificates, when installed in the chroot, adds them to its bundle.
mkdir -p "$R/usr/local/share/ca-certificates"
cp /usr/local/share/ca-certificates/*.crt "$R/usr/local/share/ca-certificates/" 2>/dev/null || true
# Packages' maintainer scripts must not start services inside the chroot.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"
mount -t proc proc "$R/proc"
[ -z "$APT_CACHE" ] || mount --bind "$APT_CACHE" "$R/var/cache/apt/archives"
mkdir -p "$R/dev/pts"
mount -t devpts -o newinstance,ptmxmode=0666 devpts "$R/dev/pts"
# A clean environment but for this machine's network settings (proxies, CA files).
net_env=$(env | grep -E '^(https?_proxy|HTTPS?_PROXY|no_proxy|NO_PROXY|SSL_CERT_FILE|SSL_CERT_DIR|CURL_CA_BUNDLE|DENO_CERT|DENO_TLS_CA_STORE|npm_config_registry)=' || true)
# Deno trusts only its built-in roots unless told: with CAs of this machine's
# own, it must read the system's store too (where those were added above).
if ls /usr/local/share/ca-certificates/*.crt >/dev/null 2>&1 && [ -z "${DENO_TLS_CA_STORE:-}" ]; then
  net_env="$net_env DENO_TLS_CA_STORE=system,mozilla"
fi
in_root() {
  # shellcheck disable=SC2086 # one word per variable (their values hold no spaces)
  chroot "$R" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 $net_env \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin /bin/sh -c "$1"
}
echo "check-fresh: apt-get install make git (all a fresh machine is assumed to have)"
in_root 'apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends make git ca-certificates >/dev/null'
git clone --quiet "$REPO" "$R/root/berth"
booted=$(date +%s)
for tool in npm node deno; do
  if in_root "command -v $tool" >/dev/null; then echo "check-fresh: $tool is in the fresh root" >&2; exit 1; fi
done

echo "check-fresh: make setup"
in_root 'cd /root/berth && make setup'
setup_done=$(date +%s)
echo "check-fresh: make setup again (must install nothing)"
again=$(in_root 'cd /root/berth && ./scripts/setup.sh' 2>&1)
if [ -n "$again" ]; then
  printf 'check-fresh: the second setup did something:\n%s\n' "$again" >&2
  exit 1
fi
echo "check-fresh: make build"
in_root 'cd /root/berth && make build && bin/berth --version'
ended=$(date +%s)
echo "check-fresh: passed in $((ended - started)) s (debootstrap and make+git $((booted - started)) s, make setup $((setup_done - booted)) s, the rest $((ended - setup_done)) s)"
