//! The one integration-test binary: the real `rtmpd` on port 0, driven through its sockets by
//! FFmpeg (when installed) and by the crate's own RTMP client, HTTP-FLV and WS-FLV readers.
//! Tests that need FFmpeg print "skipped: ffmpeg not found" without it, or fail when
//! RTMPD_REQUIRE_TOOLS=1. Every test starts its own server, so they run in parallel.

mod e2e;
mod e2e_gateway;
mod util;
