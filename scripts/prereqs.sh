#!/usr/bin/env bash
# Installs what building and testing Cairn needs on a bare Debian machine with
# a Rust toolchain. Idempotent: installs only what is missing.
set -euo pipefail

need_apt=()
# RocksDB's bindings are generated with bindgen, which loads libclang at build time.
if ! ls /usr/lib/llvm-*/lib/libclang*.so* >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep -q libclang; then
  need_apt+=(libclang-dev)
fi
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
# The operator's end-to-end tests give each pod a network namespace (ip netns, nsenter).
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
command -v nsenter >/dev/null 2>&1 || need_apt+=(util-linux)
# etcd-client (cairn-bench's etcd target) generates its gRPC code with protoc at build time.
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "prereqs: installing ${need_apt[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
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
