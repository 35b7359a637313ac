# rtmpd: `make run` builds and starts the origin with the defaults; `make test` runs the whole suite.
CARGO ?= cargo
ARGS ?=

.PHONY: all vendor build run test unit browser-test bench fixtures fmt lint

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

bench:
	bash tools/bench.sh

fixtures:
	bash tools/make-fixtures.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets
