# Two commands do everything on a fresh Debian machine with Rust:
#   make run   - install prerequisites, build, and run a local Cairn node
#   make test  - install prerequisites, then fmt, clippy and every test (what CI runs)
.PHONY: run test prereqs build bench clean-data

run:
	./scripts/run.sh

test:
	./scripts/test.sh

prereqs:
	./scripts/prereqs.sh

build: prereqs
	. scripts/env.sh && cargo build --workspace --locked

clean-data:
	rm -rf ./cairn-data
