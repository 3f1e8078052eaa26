#!/usr/bin/env bash
# Tests scripts/prereqs.sh's detection against fake filesystem roots: each
# case builds a root with some files and checks which Debian packages
# `prereqs.sh --plan` decides to install. Run by scripts/test.sh (CI).
set -euo pipefail
cd "$(dirname "$0")/.."

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
failures=0
bins="usr/bin"

# A root holding every prerequisite, as after `apt-get install` on Debian 12.
full_root() {
  local r="$1"
  mkdir -p "$r/$bins" "$r/usr/lib/llvm-14/lib/clang/14.0.6/include" "$r/usr/include/google/protobuf"
  for c in c++ cc make curl ip nsenter iptables protoc python3 prometheus promtool; do
    printf '#!/bin/sh\n' >"$r/$bins/$c"
    chmod +x "$r/$bins/$c"
  done
  touch "$r/usr/lib/llvm-14/lib/libclang-14.so.1" "$r/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h"
  touch "$r/usr/include/google/protobuf/descriptor.proto" "$r/usr/include/google/protobuf/struct.proto"
  mkdir -p "$r/usr/lib/python3.11/venv" "$r/usr/lib/python3.11/ensurepip" "$r/usr/lib/python3/dist-packages/pip"
  touch "$r/usr/lib/python3.11/venv/__init__.py" "$r/usr/lib/python3.11/ensurepip/__init__.py" \
    "$r/usr/lib/python3/dist-packages/pip/__init__.py"
}

# expect NAME ROOT PACKAGES...: the plan for ROOT is exactly PACKAGES.
expect() {
  local name="$1" root="$2"
  shift 2
  local want got
  want="$(printf '%s\n' "$@" | sed '/^$/d' | sort | tr '\n' ' ')"
  got="$(PATH=/usr/bin LIBCLANG_PATH='' PREREQS_ROOT="$root" bash scripts/prereqs.sh --plan | sort | tr '\n' ' ')"
  if [ "$want" = "$got" ]; then
    echo "ok   $name"
  else
    echo "FAIL $name: want [${want}] got [${got}]"
    failures=$((failures + 1))
  fi
}

r="$work/complete"; full_root "$r"
expect "a complete root needs nothing" "$r"

r="$work/empty"; mkdir -p "$r"
expect "an empty root needs every package" "$r" libclang-dev g++ gcc make curl iproute2 util-linux iptables protobuf-compiler libprotobuf-dev \
  python3 python3-pip python3-venv prometheus

# The fresh machine of issue 14: LLVM 14's C++ library preinstalled, no libclang.
r="$work/cpp-only"; full_root "$r"
rm "$r/usr/lib/llvm-14/lib/libclang-14.so.1"
touch "$r/usr/lib/llvm-14/lib/libclang-cpp.so.14"
mkdir -p "$r/usr/lib/x86_64-linux-gnu"
ln -s ../llvm-14/lib/libclang-cpp.so.14 "$r/usr/lib/x86_64-linux-gnu/libclang-cpp.so.14"
expect "only libclang-cpp.so.14 installs libclang-dev" "$r" libclang-dev

r="$work/unversioned"; full_root "$r"
rm "$r/usr/lib/llvm-14/lib/libclang-14.so.1"
touch "$r/usr/lib/llvm-14/lib/libclang.so"
expect "libclang.so is enough" "$r"

r="$work/multiarch"; full_root "$r"
rm "$r/usr/lib/llvm-14/lib/libclang-14.so.1"
mkdir -p "$r/usr/lib/x86_64-linux-gnu"
touch "$r/usr/lib/x86_64-linux-gnu/libclang-14.so.14.0.6"
expect "a versioned libclang in the multiarch directory is enough" "$r"

r="$work/no-headers"; full_root "$r"
rm "$r/usr/lib/llvm-14/lib/clang/14.0.6/include/stddef.h"
expect "libclang without clang's builtin headers installs libclang-dev" "$r" libclang-dev

r="$work/look-alikes"; full_root "$r"
rm "$r/usr/lib/llvm-14/lib/libclang-14.so.1"
touch "$r/usr/lib/llvm-14/lib/libclangBasic.a" "$r/usr/lib/llvm-14/lib/libclang.a" "$r/usr/lib/llvm-14/lib/libclang-cpp.so"
expect "static archives and libclang-cpp.so are not libclang" "$r" libclang-dev

r="$work/protoc-only"; full_root "$r"
rm "$r/usr/include/google/protobuf/descriptor.proto"
expect "protoc without descriptor.proto installs libprotobuf-dev" "$r" libprotobuf-dev

r="$work/dir-not-cmd"; full_root "$r"
rm "$r/$bins/protoc"; mkdir "$r/$bins/protoc"
expect "a directory named protoc is not protoc" "$r" protobuf-compiler

r="$work/not-exec"; full_root "$r"
chmod -x "$r/$bins/c++"
expect "a c++ that is not executable installs g++" "$r" g++

r="$work/python-no-venv"; full_root "$r"
rm "$r/usr/lib/python3.11/ensurepip/__init__.py"
expect "python3 without ensurepip installs python3-venv" "$r" python3-venv

r="$work/promtool-only"; full_root "$r"
rm "$r/$bins/prometheus"
expect "promtool without the prometheus server installs prometheus" "$r" prometheus

if [ "$failures" -ne 0 ]; then
  echo "prereqs-test: $failures case(s) failed" >&2
  exit 1
fi
echo "prereqs-test: every case passed"
