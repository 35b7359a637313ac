# rtmpd: `make run` builds and starts the origin with the defaults; `make test` runs the whole suite.
CARGO ?= cargo
ARGS ?=

.PHONY: all build run test unit bench fixtures fmt lint clean-artifacts

all: build

build:
	$(CARGO) build --release

run: build
	./target/release/rtmpd $(ARGS)

# The whole suite: unit tests, then the integration tests against the real binary (FFmpeg interop
# included; tests that need a missing tool print "skipped: ..." unless RTMPD_REQUIRE_TOOLS=1).
test:
	$(CARGO) test --all-targets -- --test-threads=4

unit:
	$(CARGO) test --lib

bench:
	bash tools/bench.sh

fixtures:
	bash tools/make-fixtures.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets
