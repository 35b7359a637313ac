//! hub-fanout: the hub's own share of live fan-out, without sockets, both ways in one process.
//! One stream (25 fps video, ~43 fps audio: about 230 kbps) goes to N HTTP-FLV viewers; every
//! 100 ms of media, the viewers listed for a flush are "written" (their whole queue taken, as a
//! socket with room would, through `Hub::viewer`). Three modes, alternating, several reps each:
//!
//! - `pushed`: no viewer ever follows the log: every frame goes into every viewer's queue (how
//!   the hub worked before viewers at the live edge followed a per-form log).
//! - `follow`: a viewer whose queue a write emptied calls `Hub::follow`; a follower listed for
//!   a flush is settled into its queue, which is then taken (the server before `hub::edge`).
//! - `edge`: as `follow`, but a follower is taken straight from the log (`Hub::edge`, its
//!   slices as for one vectored write, `Hub::edge_written`), as the server does now.
//!
//! It prints the CPU time per simulated second of media for each, the medians and the ratios.
//! No network, no files.
//!
//!     cargo run --release --example hub-fanout -- [VIEWERS] [MEDIA_SECONDS] [REPS]

use bytes::Bytes;
use std::io::IoSlice;

use rtmpd::hub::{Hub, HubConfig, OutputForm, ViewerId};
use rtmpd::media::frame::{TAG_AUDIO, TAG_VIDEO};
use rtmpd::media::{Frame, StreamKey};

fn frame(tag: u8, dts: u32, head: &[u8], len: usize) -> Frame {
    let mut data = head.to_vec();
    data.resize(len, 0x5a);
    Frame::parse(tag, dts, Bytes::from(data)).expect("a valid frame")
}

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Pushed,
    Follow,
    Edge,
}

/// Media seconds of the stream through `viewers` viewers; returns (CPU seconds, bytes taken).
fn run(viewers: usize, seconds: u32, mode: Mode) -> (f64, u64) {
    let mut hub = Hub::new(HubConfig::default());
    let key = StreamKey::new("live", "s").expect("a key");
    let h = hub.publish(&key, 1, 0).expect("publish").handle;
    let form = OutputForm::HttpFlv {
        chunked: false,
        track: 0,
        aac: false,
    };
    let _ = hub.frame(h, 1, frame(TAG_VIDEO, 0, &[0x17, 0, 0, 0, 0], 40), 0);
    let _ = hub.frame(h, 1, frame(TAG_AUDIO, 0, &[0xaf, 0], 4), 0);
    let _ = hub.frame(h, 1, frame(TAG_VIDEO, 0, &[0x17, 1, 0, 0, 0], 800), 0);
    let ids: Vec<ViewerId> = (0..viewers)
        .map(|t| {
            let (id, _) = hub.add_viewer(&key, form, t + 10, 0);
            hub.start_viewer(id);
            id
        })
        .collect();
    let mut dirty: Vec<ViewerId> = ids.clone();
    let mut taken = 0u64;
    let take = |hub: &mut Hub, id: ViewerId, taken: &mut u64| {
        if mode == Mode::Edge {
            if let Some(edge) = hub.edge(id) {
                let mut iov = [IoSlice::new(&[]); 64];
                let k = edge.slices(&mut iov);
                let n: usize = iov[..k].iter().map(|s| s.len()).sum();
                std::hint::black_box(&iov);
                hub.edge_written(id, n, n);
                *taken += n as u64;
                return;
            }
        }
        let q = &mut hub.viewer(id).expect("a viewer").queue;
        let n = q.queued_bytes();
        q.advance(n);
        *taken += n as u64;
        if mode != Mode::Pushed {
            hub.follow(id);
        }
    };
    let start = cpu_seconds();
    let (mut video, mut audio) = (40u32, 23u32);
    for tick in 1..=seconds * 10 {
        let until = tick * 100;
        while video.min(audio) < until {
            let f = if video <= audio {
                video += 40;
                let key = video % 2000 == 40;
                let head: &[u8] = if key {
                    &[0x17, 1, 0, 0, 0]
                } else {
                    &[0x27, 1, 0, 0, 0]
                };
                frame(TAG_VIDEO, video - 40, head, if key { 8000 } else { 500 })
            } else {
                audio += 23;
                frame(TAG_AUDIO, audio - 23, &[0xaf, 1], 186)
            };
            let out = hub.frame(h, 1, f, u64::from(until));
            dirty.extend_from_slice(out.flush);
        }
        for id in std::mem::take(&mut dirty) {
            take(&mut hub, id, &mut taken);
        }
    }
    let cpu = cpu_seconds() - start;
    (cpu, taken)
}

/// This thread's CPU time (user + system), in seconds.
#[cfg(unix)]
fn cpu_seconds() -> f64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime fills the timespec we own.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// Elsewhere (Windows): wall-clock seconds since the first call, which equal CPU time for this
/// single-threaded, never-blocking benchmark on an idle machine.
#[cfg(not(unix))]
fn cpu_seconds() -> f64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs_f64()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: VIEWERS MEDIA_SECONDS REPS"))
        .collect();
    let viewers = args.first().copied().unwrap_or(10_000);
    let seconds = args.get(1).copied().unwrap_or(20) as u32;
    let reps = args.get(2).copied().unwrap_or(5);
    let modes = [
        (Mode::Pushed, "pushed"),
        (Mode::Follow, "follow"),
        (Mode::Edge, "edge"),
    ];
    let mut per_mode = vec![Vec::new(); modes.len()];
    for rep in 1..=reps {
        for (i, &(mode, name)) in modes.iter().enumerate() {
            let (cpu, bytes) = run(viewers, seconds, mode);
            let per_s = cpu / f64::from(seconds);
            println!(
                "rep {rep} {name}: {cpu:.3} CPU s for {seconds} s of media ({per_s:.4} per media s), {:.1} MB taken, {:.3} CPU s/GB",
                bytes as f64 / 1e6,
                cpu / (bytes as f64 / 1e9)
            );
            per_mode[i].push(per_s);
        }
    }
    let m: Vec<f64> = per_mode.into_iter().map(median).collect();
    println!(
        "{viewers} viewers: pushed {:.4}, follow {:.4}, edge {:.4} CPU s per media s (medians of {reps}); follow/pushed {:.3}, edge/pushed {:.3}, edge/follow {:.3}",
        m[0],
        m[1],
        m[2],
        m[1] / m[0],
        m[2] / m[0],
        m[2] / m[1]
    );
}
