# Two commands do everything on a fresh Debian machine with Rust:
#   make run   - install prerequisites, build, and run a local 3-node Cairn cluster
#                (SINGLE=1 make run: one standalone node)
#   make test  - install prerequisites, then fmt, clippy and every test (what CI runs)
#   make bench - Cairn vs etcd vs Redis, side by side (scripts/bench-compare.sh; QUICK=1 for ~2 min)
#   make fuzz  - every fuzz target for 5 minutes (scripts/fuzz.sh; FUZZ_SECONDS=N to change)
#   make chaos - the long chaos campaign: 100 seeded fault runs of 60 s on 3 and 5 nodes (scripts/chaos.sh; root)
.PHONY: run test prereqs build bench fuzz chaos clean-data

run:
	./scripts/run.sh

test:
	./scripts/test.sh

prereqs:
	./scripts/prereqs.sh

build: prereqs
	. scripts/env.sh && cargo build --workspace --locked

bench:
	./scripts/bench-compare.sh

fuzz:
	./scripts/fuzz.sh $(or $(FUZZ_SECONDS),300)

chaos:
	./scripts/chaos.sh

clean-data:
	rm -rf ./cairn-data ./cairn-playground
