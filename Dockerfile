# syntax=docker/dockerfile:1
# Cairn images, for users with Docker or any OCI builder:
#   docker build --target node     -t cairn:0.1.0 .            # cairn-node (and cairnctl)
#   docker build --target operator -t cairn-operator:0.1.0 .   # cairn-operator
# scripts/build-image.sh assembles the same two images without a Docker
# daemon (buildah), from binaries built on this machine.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
# The same prerequisites as on a developer machine (libclang for RocksDB's
# bindgen, protoc, a C++ compiler), installed by the same script.
RUN ./scripts/prereqs.sh \
 && CARGO_TARGET_DIR=/target cargo build --release --locked \
      -p cairn-node -p cairnctl -p cairn-operator \
      --bin cairn-node --bin cairnctl --bin cairn-operator \
 && mkdir -p /out \
 && cp /target/release/cairn-node /target/release/cairnctl /target/release/cairn-operator /out/

# The runtime: Debian's slim image (glibc and libstdc++, which RocksDB
# needs), the binaries, a non-root user, no shell tools beyond the base.
FROM debian:${DEBIAN_RELEASE}-slim AS runtime
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="Cairn" \
      org.opencontainers.image.description="Hash-sharded, replicated key-value store for Kubernetes" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/cairn-db/cairn" \
      org.opencontainers.image.vendor="Cairn"
RUN groupadd --system --gid 65532 cairn \
 && useradd --system --uid 65532 --gid 65532 --home-dir /var/lib/cairn --create-home cairn
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
WORKDIR /var/lib/cairn

FROM runtime AS operator
ENTRYPOINT ["/usr/local/bin/cairn-operator"]

# Last stage: the default target is the node image.
FROM runtime AS node
# gRPC, HTTP, metrics.
EXPOSE 7000 7001 7002
VOLUME ["/var/lib/cairn"]
ENTRYPOINT ["/usr/local/bin/cairn-node"]
