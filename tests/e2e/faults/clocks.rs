//! Fault test of a publisher's clock (issue 13 point 3): timestamps that jump back, jump forward
//! by hours and wrap past 2^32 ms, sent by our own RTMP client, against the HTTP-FLV and WS-FLV
//! viewers and the recordings. timestamps.rs checks an RTMP player with a jump back to 0; this
//! checks the HTTP outputs and a short jump back.

use std::time::Duration;

use rtmpd::media::Track;

use crate::util::*;

const FINALISE: Duration = Duration::from_secs(30);

/// The fixture with its clock broken in four parts of 2.5 s: as it is; 2 s back; 5 hours on;
/// from 1 s before the 32-bit wrap (crossing it inside the part).
fn broken_clock() -> Vec<(u32, rtmpd::media::Frame)> {
    let offsets: [u32; 4] = [
        0,
        0u32.wrapping_sub(2000),
        5 * 3_600_000,
        (u32::MAX - 1000).wrapping_sub(7500),
    ];
    looped_fixture_frames("fixture.flv", 1)
        .into_iter()
        .map(|(rel, mut f)| {
            let part = if f.config || f.track == Track::Meta {
                0
            } else {
                (rel / 2500).min(3) as usize
            };
            f.dts = rel.wrapping_add(offsets[part]);
            (rel, f)
        })
        .collect()
}

/// Per track, never back, and spanning about the fixture's 10 s (no hours, no wrap).
fn assert_sane_clock(frames: &[rtmpd::media::Frame], what: &str) {
    assert_monotonic(frames, what);
    for track in [Track::Audio, Track::Video] {
        let ts: Vec<u32> = frames
            .iter()
            .filter(|f| f.track == track && !f.config)
            .map(|f| f.dts)
            .collect();
        assert!(ts.len() > 100, "{what}: {track:?} {} frames", ts.len());
        let span = ts[ts.len() - 1] - ts[0];
        assert!(span < 11_000, "{what}: {track:?} spans {span} ms");
    }
}

/// HTTP-FLV and WS-FLV viewers get monotonic timestamps spanning the media, every frame of it;
/// the HLS playlist marks the jumps with DISCONTINUITY and no segment is over 3x the target;
/// the FLV and MP4 recordings read clean in ffprobe with about the media's duration.
#[test]
fn broken_publisher_clock_keeps_http_outputs_and_recordings_valid() {
    if !require_tool("ffprobe") {
        return;
    }
    let server = Server::builder()
        .args(["--hls-fragment", "2"])
        .no_web()
        .start();
    let name = unique_stream("clock");
    let path = format!("/live/{name}.flv");
    let (addr, p3) = (server.http, path.clone());
    let http = spawn_live_get(
        addr,
        &path,
        Duration::from_secs(10),
        Duration::from_secs(40),
    );
    let ws = std::thread::spawn(move || {
        ws_get_flv_when_live(addr, &p3, Duration::from_secs(10), Duration::from_secs(40))
    });
    std::thread::sleep(Duration::from_millis(300));
    let publisher = PacedPublisher::start(
        server.rtmp,
        "live",
        &name,
        broken_clock(),
        2.0,
        Duration::from_millis(800),
    )
    .expect("publish");
    publisher.join().expect("publisher");

    let r = http.join().unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.end,
        BodyEnd::LastChunk,
        "HTTP-FLV viewer not ended cleanly"
    );
    let flv = parse_flv(&r.body);
    flv.assert_valid("HTTP-FLV viewer", true);
    assert_sane_clock(&flv.frames, "HTTP-FLV viewer");
    assert_counts(&flv.frames, "fixture.flv", "HTTP-FLV viewer");
    let w = ws.join().unwrap();
    let wflv = parse_flv(&w.data);
    wflv.assert_valid("WS-FLV viewer", true);
    assert_sane_clock(&wflv.frames, "WS-FLV viewer");
    assert_counts(&wflv.frames, "fixture.flv", "WS-FLV viewer");

    let key = format!("live/{name}");
    for line in [
        format!("FLV recording of {key} ->"),
        format!("HLS recording of {key} ->"),
        format!("/mp4/{key} ("),
    ] {
        let got =
            server.wait_for_log_where(|l| l.contains(&line) && l.contains("finished"), FINALISE);
        assert!(got.is_some(), "no '{line} ... finished' line");
    }
    let dir = |kind: &str| server.data_dir.join(kind).join("live").join(&name);
    let pl = read_media_playlist(&dir("hls").join("index.m3u8"));
    eprintln!(
        "clock: HLS target {} EXTINF {:?}, {} discontinuities",
        pl.target, pl.extinf, pl.discontinuities
    );
    assert!(pl.endlist, "HLS: no ENDLIST");
    assert!(
        pl.discontinuities >= 2,
        "HLS: {} discontinuities for three jumps",
        pl.discontinuities
    );
    assert!(
        pl.extinf.iter().all(|&d| d > 0.0 && d <= 3.0 * 2.0),
        "HLS: a segment over 3x the 2 s target: {:?}",
        pl.extinf
    );
    assert!(
        pl.extinf.iter().all(|&d| d <= pl.target + 0.001),
        "HLS: EXTINF over TARGETDURATION {}: {:?}",
        pl.target,
        pl.extinf
    );
    assert!(
        (pl.total() - 10.0).abs() < 1.0,
        "HLS holds {:.2} s of 10 s: {:?}",
        pl.total(),
        pl.extinf
    );
    assert_probes_clean(&dir("hls").join("index.m3u8"), "HLS");
    let flv_file = files_ending(&dir("flv"), ".flv");
    assert_eq!(flv_file.len(), 1, "{flv_file:?}");
    assert_probes_clean(&flv_file[0], "FLV recording");
    let d = probe_duration(&flv_file[0]);
    assert!((d - 10.0).abs() < 1.0, "FLV recording: {d:.2} s");
    let full = dir("mp4").join("output_merge/stream_full.mp4");
    assert_probes_clean(&full, "stream_full.mp4");
    let d = probe_duration(&full);
    assert!((d - 10.0).abs() < 1.0, "stream_full.mp4: {d:.2} s");
}
