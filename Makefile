# rtmpd: `make run` builds and starts the origin with the defaults; `make test` runs the whole suite.
CARGO ?= cargo
ARGS ?=

.PHONY: all vendor build run test unit browser-test bench bench-gateway bench-record bench-files bench-all fixtures fmt lint
.PHONY: fuzz

all: build

# The player libraries (mpegts.js, hls.js) from the npm registry into web/vendor/, which the build
# embeds into the binary. Without npm this says so and the pages fall back to the public CDN copies.
vendor:
	bash tools/vendor.sh

build: vendor
	$(CARGO) build --release

run: build
	./target/release/rtmpd $(ARGS)

# The whole suite: unit tests, the integration tests against the real binary (FFmpeg interop
# included), then the pages in headless Chromium. A missing tool prints "skipped: ..." unless
# RTMPD_REQUIRE_TOOLS=1 (CI), which turns every skip into a failure.
test: vendor
	$(CARGO) test --all-targets -- --test-threads=4
	bash tools/browser-test.sh

unit:
	$(CARGO) test --lib

browser-test: vendor
	bash tools/browser-test.sh

# Benchmarks (never timed tests): each compares against a peer measured in the same run.
bench:                  # origin fan-out against nginx-rtmp (about 10 minutes)
	bash tools/bench.sh

bench-gateway:          # the FLV gateway's fan-out next to the origin's
	bash tools/bench-gateway.sh

bench-record:           # CPU per hour of media per recorder, the merge, fan-out with recorders on/off
	bash tools/bench-record.sh

bench-files:            # the static file service against nginx with wrk
	bash tools/bench-files.sh

bench-all: bench bench-gateway bench-record bench-files

fixtures:
	bash tools/make-fixtures.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets

# Every fuzz target for FUZZ_SECS seconds each (cargo-fuzz, debug assertions on; needs
# `cargo install cargo-fuzz`). Crashing inputs land in fuzz/artifacts/TARGET/.
FUZZ_SECS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECS)
