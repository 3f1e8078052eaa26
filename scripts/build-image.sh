#!/usr/bin/env bash
# Builds the Cairn container images without a Docker daemon, with Debian's
# buildah (vfs storage, chroot isolation), from binaries built on this
# machine, and writes them as OCI archives:
#
#   $OUT/cairn-<version>.oci.tar            entrypoint cairn-node (cairnctl beside it)
#   $OUT/cairn-operator-<version>.oci.tar   entrypoint cairn-operator
#
# No base image can be pulled here, so each image starts from scratch and
# holds the binaries plus exactly the shared libraries `ldd` says they load,
# the dynamic loader, a passwd/group with the non-root user `cairn`
# (uid/gid 65532, as in the Dockerfile) and /var/lib/cairn owned by it.
# Both images are checked before they are written: `cairn-node --version`
# and `cairn-operator --version` run inside them (`buildah run`), and
# `skopeo inspect` of each archive shows the OCI labels, user and entrypoint.
#
#   scripts/build-image.sh                    # release binaries (cargo build --release)
#   PROFILE=debug scripts/build-image.sh      # debug binaries (faster to build)
#   PREBUILT=1 PROFILE=debug scripts/build-image.sh   # the binaries the test run built (what CI checks)
#   OUT=/tmp/images scripts/build-image.sh
# Load an archive elsewhere with: skopeo copy oci-archive:cairn-0.1.0.oci.tar docker-daemon:cairn:0.1.0
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/env.sh
profile="${PROFILE:-release}"
out="${OUT:-$CARGO_TARGET_DIR/images}"
version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)"
revision="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
state="${BUILDAH_STATE:-/var/tmp/cairn-buildah}"

[ "$(id -u)" -eq 0 ] || { echo "build-image: needs root (buildah with chroot isolation)" >&2; exit 1; }
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v skopeo >/dev/null 2>&1 || missing+=(skopeo)
if [ ${#missing[@]} -gt 0 ]; then
  echo "build-image: installing ${missing[*]}" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

flag=(); [ "$profile" = release ] && flag=(--release)
[ "$profile" = release ] || [ "$profile" = debug ] || { echo "build-image: PROFILE is release or debug" >&2; exit 2; }
bindir="$CARGO_TARGET_DIR/$profile"
if [ "${PREBUILT:-0}" = 1 ]; then
  for bin in cairn-node cairnctl cairn-operator; do
    [ -x "$bindir/$bin" ] || { echo "build-image: PREBUILT=1 but $bindir/$bin is missing" >&2; exit 1; }
  done
else
  echo "== cargo build ${flag[*]} (cairn-node, cairnctl, cairn-operator)"
  cargo build "${flag[@]}" --locked -p cairn-node -p cairnctl -p cairn-operator \
    --bin cairn-node --bin cairnctl --bin cairn-operator
fi

bh() { buildah --root "$state/root" --runroot "$state/run" --storage-driver vfs "$@"; }
mkdir -p "$out" "$state"
containers=()
cleanup() { local c; for c in "${containers[@]}"; do bh rm "$c" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

# build_image NAME ENTRYPOINT DESCRIPTION BINARIES...
build_image() {
  local name="$1" entry="$2" description="$3"
  shift 3
  local c mnt lib bin archive
  c="$(bh from scratch)"
  containers+=("$c")
  mnt="$(bh mount "$c")"
  mkdir -p "$mnt/usr/local/bin" "$mnt/etc" "$mnt/tmp" "$mnt/var/lib/cairn"
  chmod 1777 "$mnt/tmp"
  for bin in "$@"; do
    install -m 0755 "$bindir/$bin" "$mnt/usr/local/bin/$bin"
    # Every shared object the binary loads, at the path the loader looks for it.
    ldd "$bindir/$bin" | awk '/=> \// { print $3 } /^\t\/.*ld-linux/ { print $1 }' | while read -r lib; do
      mkdir -p "$mnt$(dirname "$lib")"
      cp -L "$lib" "$mnt$lib"
    done
  done
  # /lib64 → the loader path the binaries name, as on Debian.
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\ncairn:x:65532:65532:cairn:/var/lib/cairn:/usr/sbin/nologin\n' >"$mnt/etc/passwd"
  printf 'root:x:0:\ncairn:x:65532:\n' >"$mnt/etc/group"
  printf 'hosts: files dns\n' >"$mnt/etc/nsswitch.conf"
  chown 65532:65532 "$mnt/var/lib/cairn"
  bh unmount "$c" >/dev/null
  bh config \
    --entrypoint "[\"/usr/local/bin/$entry\"]" --cmd '[]' \
    --user 65532:65532 --workingdir /var/lib/cairn \
    --env PATH=/usr/local/bin \
    --label org.opencontainers.image.title="$name" \
    --label org.opencontainers.image.description="$description" \
    --label org.opencontainers.image.version="$version" \
    --label org.opencontainers.image.revision="$revision" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label org.opencontainers.image.source=https://github.com/cairn-db/cairn \
    --label org.opencontainers.image.vendor=Cairn \
    "$c"
  if [ "$entry" = cairn-node ]; then bh config --port 7000 --port 7001 --port 7002 --volume /var/lib/cairn "$c"; fi
  # The binaries run inside the image, as its user.
  for bin in "$@"; do
    echo "== inside $name: $bin --version: $(bh run --isolation chroot --user 65532:65532 "$c" -- "/usr/local/bin/$bin" --version)"
  done
  archive="$out/$name-$version.oci.tar"
  rm -f "$archive"
  bh commit --quiet --format oci "$c" "oci-archive:$archive:$name:$version" >/dev/null
  # What a registry or runtime will see.
  skopeo inspect --config "oci-archive:$archive" | python3 -c '
import json, sys
name, entry, version = sys.argv[1], sys.argv[2], sys.argv[3]
cfg = json.load(sys.stdin)["config"]
labels = cfg.get("Labels", {})
problems = []
if cfg.get("User") != "65532:65532": problems.append("user is %r" % cfg.get("User"))
if cfg.get("Entrypoint") != ["/usr/local/bin/" + entry]: problems.append("entrypoint is %r" % cfg.get("Entrypoint"))
if labels.get("org.opencontainers.image.version") != version: problems.append("version label is %r" % labels.get("org.opencontainers.image.version"))
for k in ("title", "revision", "source", "licenses"):
    if not labels.get("org.opencontainers.image." + k): problems.append("no %s label" % k)
if problems: sys.exit("build-image: %s: %s" % (name, "; ".join(problems)))
print("== %s: user %s, entrypoint %s, labels %s" % (name, cfg["User"], cfg["Entrypoint"], ", ".join(sorted(labels))))
' "$name" "$entry" "$version"
  echo "== wrote $archive ($(du -h "$archive" | cut -f1))"
}

build_image cairn cairn-node "Cairn: hash-sharded, replicated key-value store" cairn-node cairnctl
build_image cairn-operator cairn-operator "Kubernetes operator for Cairn" cairn-operator
