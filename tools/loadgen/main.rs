//! rtmpd-load: opens N viewers of one live stream over RTMP, HTTP-FLV or WS-FLV (the last two
//! also over TLS: https://, wss://) or WebRTC (WHEP, whep://) from one thread (one `mio::Poll`) and reports per run:
//! viewers that received the full stream, time to first keyframe, stalls, bytes, and the
//! server's CPU time and memory read from /proc. Not a player: media is parsed only as far as
//! counting frames and spotting keyframes. Bytes are what the protocol parser got: socket bytes
//! for rtmp://, http://, ws://; the decrypted bytes for https://, wss:// (so the same stream
//! counts the same over TLS; the TLS record overhead is not counted).
//!
//! "Full stream" means: the viewer got its first keyframe (audio-only: first audio frame), no
//! gap between two reads carrying media exceeded 2 s, no frame was missing (no jump of more than
//! 500 ms between the timestamps of consecutive frames of a track, which a skip to the next
//! keyframe would cause), its last media arrived within 1 s of the end of the run, and the
//! connection saw no error or close before the end.
//!
//! Modules: `args` (command line), `run` (the poll loop), `viewer` (one connection per
//! protocol), `tls` (rustls for https:// and wss://), `body` (HTTP body and WebSocket framing,
//! via `rtmpd::codec`), `flv` (FLV to frames), `stats` (the full-stream rule), `report` (text
//! and JSON), `sys` (/proc, limits), `whep` (WebRTC viewers: str0m over UDP, on threads).

mod args;
mod body;
mod flv;
mod report;
mod run;
mod stats;
mod sys;
mod tls;
mod viewer;
mod whep;

use std::process::ExitCode;
use std::time::Duration;

use args::Config;
use run::run;
use sys::raise_nofile_limit;

/// Default connect schedule when `--ramp` is not given: this many viewers every `BATCH_EVERY`,
/// so the listen backlog of neither server overflows while 10,000 viewers still start in 2 s.
pub(crate) const BATCH: usize = 500;
pub(crate) const BATCH_EVERY: Duration = Duration::from_millis(100);
/// A gap between media reads above this means the viewer did not get the full stream.
pub(crate) const STALL_LIMIT: Duration = Duration::from_secs(2);
/// The last media must have arrived within this of the end of the run.
pub(crate) const TAIL_LIMIT: Duration = Duration::from_secs(1);
/// A larger step between the timestamps of consecutive frames of one track means frames were
/// dropped (frames are 20-40 ms apart in any stream this tool is pointed at).
pub(crate) const TS_GAP_LIMIT_MS: u32 = 500;
/// One read buffer shared by all viewers: per-viewer buffers would cost memory per connection.
pub(crate) const READ_BUF: usize = 256 * 1024;
/// Caps on what a viewer buffers: a response head, and one FLV tag.
pub(crate) const HEAD_CAP: usize = 16 * 1024;
pub(crate) const TAG_CAP: usize = 16 << 20;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::parse(&args) {
        Ok(Some(c)) => c,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rtmpd-load: {e}");
            return ExitCode::from(2);
        }
    };
    raise_nofile_limit();
    match run(&config) {
        Ok(report) => {
            if config.json {
                println!("{}", report.json());
            } else {
                print!("{}", report.text());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("rtmpd-load: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod testutil {
    /// Feeds `data` in pieces split at every position (and byte by byte) to `run`, which must
    /// give the same result each time.
    pub(crate) fn every_split<T: PartialEq + std::fmt::Debug>(
        data: &[u8],
        run: impl Fn(&[&[u8]]) -> T,
    ) -> T {
        let whole = run(&[data]);
        for i in 0..=data.len() {
            assert_eq!(run(&[&data[..i], &data[i..]]), whole, "split at {i}");
        }
        let bytes: Vec<&[u8]> = data.chunks(1).collect();
        assert_eq!(run(&bytes), whole, "byte by byte");
        whole
    }
}
