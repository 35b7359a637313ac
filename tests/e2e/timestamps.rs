//! A publisher whose clock jumps (issue 11's ingest normaliser, issue 13 hole 5) checked on the
//! real binary: our own RTMP client publishes the fixture with its timestamps jumping forward by
//! hours, back to 0 and across the 2^32 ms wrap; an RTMP player, the FLV file, the HLS playlist
//! and the merged MP4 must all stay monotonic, as long as the media, and valid for FFmpeg.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rtmpd::media::Track;

use crate::util::*;

const FINALISE: Duration = Duration::from_secs(30);

/// `ffprobe -v error` of `input`: (stream index, dts in its time base seconds) of every packet;
/// panics when ffprobe fails or prints an error.
fn probe_packets(input: &Path) -> Vec<(u32, f64)> {
    let out = Command::new("ffprobe")
        .args(["-hide_banner", "-v", "error"])
        .args([
            "-show_entries",
            "packet=stream_index,dts_time",
            "-of",
            "csv=p=0",
        ])
        .arg(input)
        .output()
        .expect("ffprobe runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && err.trim().is_empty(),
        "ffprobe {}: {err}",
        input.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut it = l.trim().trim_end_matches(',').split(',');
            Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
        })
        .collect()
}

/// Every stream's decode times only go forward, and the whole spans about the fixture's 10 s.
fn assert_monotonic_and_short(packets: &[(u32, f64)], what: &str) {
    assert!(packets.len() > 100, "{what}: {} packets", packets.len());
    let mut last: Vec<(u32, f64)> = Vec::new();
    for &(s, dts) in packets {
        match last.iter_mut().find(|(i, _)| *i == s) {
            Some((_, l)) => {
                assert!(dts >= *l, "{what}: stream {s} dts {dts} after {l}");
                *l = dts;
            }
            None => last.push((s, dts)),
        }
    }
    let lo = packets.iter().map(|p| p.1).fold(f64::MAX, f64::min);
    let hi = packets.iter().map(|p| p.1).fold(f64::MIN, f64::max);
    assert!(hi - lo < 11.0, "{what}: spans {:.1} s", hi - lo);
}

/// The fixture's frames with their timestamps moved, each with its time in the fixture (for
/// pacing): the first quarter as it is, then 3 hours on, then back to 0, then from just before
/// the 32-bit wrap (crossing it a second later).
fn jumping_frames() -> Vec<(u32, rtmpd::media::Frame)> {
    let (_, _, frames) = rtmpd::mux::flv_demux::read_all(&fixture_bytes("fixture.flv")).unwrap();
    let first = frames[0].dts;
    let offsets = [
        0u32,
        3 * 3_600_000,
        0u32.wrapping_sub(5000),
        (u32::MAX - 1000).wrapping_sub(7500),
    ];
    frames
        .into_iter()
        .filter(|f| !is_end_of_sequence(f))
        .map(|mut f| {
            let rel = f.dts - first;
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

#[test]
fn jumping_timestamps_keep_every_output_monotonic_and_valid() {
    if !require_tool("ffprobe") {
        return;
    }
    let server = Server::builder()
        .args(["--hls-fragment", "2"])
        .no_web()
        .start();
    let name = unique_stream("jump");
    let key = format!("live/{name}");
    let mut client = RtmpClient::connect(server.rtmp, "live", RTMP_TIMEOUT).unwrap();
    let sid = client.publish(&name).unwrap();
    let player = spawn_rtmp_play(server.rtmp, "live", &name, Duration::from_secs(30));
    std::thread::sleep(Duration::from_millis(300));
    // Twice real time, by the fixture's own clock.
    let start = Instant::now();
    for (rel, f) in jumping_frames() {
        let at = start + Duration::from_millis(rel as u64 / 2);
        if let Some(d) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
        client.send_frame(sid, &f).unwrap();
    }
    client.close();

    // The player: per track, timestamps never go back, and they cover about 10 s.
    let play = player.join().unwrap();
    assert!(play.refused.is_none(), "{:?}", play.refused);
    for track in [Track::Audio, Track::Video] {
        let ts: Vec<u32> = play
            .frames
            .iter()
            .filter(|f| f.track == track && !f.config)
            .map(|f| f.dts)
            .collect();
        assert!(ts.len() > 100, "{track:?}: {} frames", ts.len());
        assert!(ts.windows(2).all(|w| w[1] >= w[0]), "{track:?}: {ts:?}");
        assert!(ts[ts.len() - 1] - ts[0] < 11_000, "{track:?}: {ts:?}");
    }

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

    let flv = std::fs::read_dir(dir("flv"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "flv"))
        .expect("an FLV recording");
    assert_monotonic_and_short(&probe_packets(&flv), "FLV");

    let index = dir("hls").join("index.m3u8");
    let text = std::fs::read_to_string(&index).unwrap();
    assert_eq!(text.matches("#EXT-X-DISCONTINUITY\n").count(), 3, "{text}");
    let extinf: Vec<f64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .map(|v| v.trim_end_matches(',').parse().unwrap())
        .collect();
    // 2 s target, a keyframe every 2 s: no segment is stretched by a jump.
    assert!(extinf.iter().all(|&d| d <= 4.1), "{text}");
    let total: f64 = extinf.iter().sum();
    assert!((total - 10.0).abs() < 0.5, "{total}: {text}");
    assert_monotonic_and_short(&probe_packets(&index), "HLS");

    let full = dir("mp4").join("output_merge").join("stream_full.mp4");
    assert_monotonic_and_short(&probe_packets(&full), "MP4");
    assert!(
        !server.logs().iter().any(|l| l.contains("[ERROR]")),
        "error lines in the log"
    );
}
