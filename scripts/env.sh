# Shared build settings, sourced by the scripts. A target directory outside
# the clone lets fresh clones (CI) reuse the compiled RocksDB.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/cairn-target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
