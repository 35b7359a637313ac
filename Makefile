# rtmpd: `make run` builds and starts the origin with the defaults; `make test` runs the whole suite.
CARGO ?= cargo
ARGS ?=

.PHONY: all vendor build release run test test-setup unit browser-test bench bench-gateway bench-record bench-files bench-tls bench-srt bench-audio bench-webrtc bench-all soak \
	fixtures fmt lint check-targets windows-smoke arm-smoke check-deploy docker fuzz

# Targets checked with `cargo check --all-targets` (kqueue on macOS, no splice off Linux): no warnings allowed.
CHECK_TARGETS ?= aarch64-apple-darwin x86_64-apple-darwin aarch64-unknown-linux-gnu x86_64-pc-windows-gnu
# `make run` records here unless ARGS has its own --data-dir; git-ignored.
DATA ?= data

all: build

# The player libraries (mpegts.js, hls.js) from the npm registry into web/vendor/, which the build
# embeds into the binary. Without npm this says so and the pages fall back to the public CDN copies.
vendor:
	bash tools/vendor.sh

build: vendor
	$(CARGO) build --release

# The shipped binary (profile.release: optimised, LTO, debug info stripped, symbols kept), and its size.
release: vendor
	$(CARGO) build --release --bin rtmpd
	@wc -c < target/release/rtmpd | awk '{ printf "release: target/release/rtmpd, %d bytes (%.1f MiB)\n", $$1, $$1 / 1048576 }'

run: build
	./target/release/rtmpd $(if $(findstring --data-dir,$(ARGS)),,--data-dir $(DATA)) $(ARGS)

# The whole suite: unit tests, the integration tests against the real binary (FFmpeg interop
# included), the FFmpeg 9 codec checks, then the pages in headless Chromium. tools/test-setup.sh
# first installs what is missing (Debian, as root; elsewhere it stops with the command that does)
# and fetches FFmpeg 9, so a fresh machine skips nothing. RTMPD_NO_SETUP=1 leaves the machine
# alone: a missing tool then prints "skipped: ..." unless RTMPD_REQUIRE_TOOLS=1 (CI), which turns
# every skip into a failure.
test:
	@ff9="$$(bash tools/test-setup.sh)" || exit 1; \
	export RTMPD_FFMPEG9="$${ff9:-$${RTMPD_FFMPEG9:-$(CURDIR)/tools/ffmpeg9/ffmpeg}}"; set -e; \
	bash tools/vendor.sh; \
	$(CARGO) test --all-targets -- --test-threads=3; \
	if [ -x "$$RTMPD_FFMPEG9" ] || [ "$${RTMPD_REQUIRE_TOOLS:-0}" = 1 ]; then \
		$(CARGO) test --lib -- --ignored ffmpeg9; \
	else echo "skipped: FFmpeg 9 not found (sh tools/fetch-ffmpeg.sh): its unit checks"; fi; \
	$(CARGO) test --test tests -- --ignored ffmpeg9 --test-threads=2; \
	bash tools/browser-test.sh

# Only the set-up of `make test` (tools/test-setup.sh): packages on Debian, FFmpeg 9.
test-setup:
	bash tools/test-setup.sh

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

bench-tls:              # CPU per GB of HTTPS-FLV against HTTP-FLV, one server (about 5 minutes)
	bash tools/bench-tls.sh

bench-webrtc:           # WHEP viewers per core (rtmpd on one core) and CPU per GB next to HTTP-FLV (about 3 minutes)
	bash tools/bench-webrtc.sh

bench-audio:            # CPU per bridged audio stream (AAC to Opus, Opus to AAC), a fraction of a core; SECS=20
	$(CARGO) run --quiet --profile bench-audio --example bench-audio


bench-srt:              # SRT: CPU per GB next to RTMP, glass-to-glass latency, loss sweep (about 1 minute)
	python3 tools/bench-srt.py

bench-all: bench bench-gateway bench-record bench-files bench-tls bench-srt bench-audio bench-webrtc

.PHONY: latency
latency:                # glass-to-glass latency in Chromium: WebRTC, HTTP-FLV, LL-HLS in one run (about 40 s)
	bash tools/latency.sh

# Soak (not in `make test`): SOAK_SECS [1800] of viewer churn over every protocol, a reconnecting
# publisher and every recorder on; fails when RSS grows over 10%, an fd leaks or a recording is bad.
SOAK_SECS ?= 1800
soak:
	SOAK_SECS=$(SOAK_SECS) bash tools/soak.sh

fixtures:
	bash tools/make-fixtures.sh

fmt:
	$(CARGO) fmt

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	python3 tools/modgraph.py  # no cycle between top-level modules (issue 24 item 5)

# macOS, ARM Linux and Windows: the crate and its tests compile without a warning (tools/windows-setup.sh
# installs the targets). Linking for them is not needed to check. ring (rustls's crypto) compiles some
# C: mingw-w64 and the aarch64 cross gcc do it for Windows and ARM Linux; for macOS, without Apple's
# SDK, clang compiles it freestanding (ring's RING_CORE_NOSTDLIBINC) with a stand-in for the one SDK
# header it includes (tools/cross/macos-include).
MACOS_CFLAGS = -DRING_CORE_NOSTDLIBINC -ffreestanding -nostdlibinc -isystem $(CURDIR)/tools/cross/macos-include
check-targets:
	@for t in $(CHECK_TARGETS); do \
		echo "check-targets: $$t"; \
		RUSTFLAGS="-D warnings" \
		CC_aarch64_apple_darwin=clang CFLAGS_aarch64_apple_darwin="$(MACOS_CFLAGS)" \
		CC_x86_64_apple_darwin=clang CFLAGS_x86_64_apple_darwin="$(MACOS_CFLAGS)" \
		$(CARGO) check --quiet --all-targets --target $$t || exit 1; \
	done

# rtmpd.exe under Wine against Linux FFmpeg (tools/windows-smoke.sh).
windows-smoke:
	bash tools/windows-smoke.sh

# The aarch64 Linux binary under qemu-user (tools/arm-smoke.sh).
arm-smoke:
	bash tools/arm-smoke.sh

# nginx -t on deploy/nginx.conf and the docs/deployment.md's nginx example; docker-compose.yml parsed and its commands checked.
check-deploy:
	bash deploy/check.sh

# Not run in CI (no Docker daemon there): the image as the README describes it.
docker:
	docker build -t rtmpd .

# Every fuzz target for FUZZ_SECS seconds each (cargo-fuzz, debug assertions on; needs
# `cargo install cargo-fuzz`). Crashing inputs land in fuzz/artifacts/TARGET/.
FUZZ_SECS ?= 60
fuzz:
	bash fuzz/run.sh $(FUZZ_SECS)
