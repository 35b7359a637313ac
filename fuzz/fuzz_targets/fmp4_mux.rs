//! The fMP4 muxer (`mux::fmp4`) fed an arbitrary frame sequence: the `Fragmenter` cuts segments,
//! `media_segment` and `init_segment` write them. Checked on the output: boxes tile each file; each
//! `trun` announces exactly the bytes its run holds and its data offset points into the `mdat`,
//! which is as long as the runs; and the merge (`mux::mp4`) reads the segments back with every
//! sample and writes a file whose boxes tile it.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use rtmpd::media::Track;
use rtmpd::mux::bmff::{boxes, find, Reader};
use rtmpd::mux::fmp4::{init_segment, media_segment, AudioConfig, Fragment, Fragmenter, VideoConfig};
use rtmpd::mux::mp4::{parse_init, Merger};
use rtmpd_fuzz::{frames, Cursor};
use std::io::Cursor as Io;

fuzz_target!(|data: &[u8]| {
    let mut c = Cursor::new(data);
    let setup = c.u8();
    let target_ms = u32::from(c.u16()) + 1;
    let has_video = setup & 1 != 0;
    let rate = [8000, 44_100, 48_000, 1][usize::from(setup >> 1) & 3];
    let audio_rate = (setup & 8 != 0).then_some(rate);
    let mut fr = Fragmenter::new(target_ms, has_video, audio_rate);
    let mut fragments = Vec::new();
    for f in frames(&mut c, 512) {
        let track = if f.video { Track::Video } else { Track::Audio };
        if let Some(frag) = fr.push(track, u64::from(f.dts), f.cts, f.key, Bytes::from(f.data)) {
            fragments.push(frag);
        }
    }
    fragments.extend(fr.finish());
    let video = has_video.then(|| VideoConfig {
        avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe1, 0, 4, 0x67, 0x64, 0, 0x1f, 1, 0, 2, 0x68, 0xee]),
        width: 320,
        height: 240,
    });
    let audio = audio_rate.map(|r| AudioConfig {
        asc: Bytes::from_static(&[0x12, 0x10]),
        sample_rate: r,
        channels: 2,
    });
    let init = init_segment(video.as_ref(), audio.as_ref());
    assert_tiles(&init);
    let mut segments = Vec::new();
    let mut samples = 0u64;
    for frag in &fragments {
        let seg = media_segment(frag.sequence, &frag.runs());
        check_segment(&seg, frag);
        samples += frag.runs().iter().map(|r| r.samples.len() as u64).sum::<u64>();
        segments.push(seg);
    }
    // No samples, nothing to merge (the merge refuses to write an empty movie).
    if samples == 0 {
        return;
    }
    let tracks = parse_init(&init).expect("our init segment parses");
    let mut m = Merger::new(tracks);
    for seg in &segments {
        let scan = m.add_segment(&mut Io::new(&seg[..]), seg.len() as u64).expect("scan");
        assert_eq!(scan.dropped, 0, "samples of our own segment dropped");
    }
    let merged: u64 = m.sample_counts().iter().map(|(_, n)| *n as u64).sum();
    assert_eq!(merged, samples, "the merge lost or invented samples");
    let mut out = Vec::new();
    let n = m
        .write(&mut out, |i| Ok(Io::new(&segments[i as usize][..])))
        .expect("merge of our own segments");
    assert_eq!(n, out.len() as u64);
    assert_tiles(&out);
});

fn check_segment(seg: &[u8], frag: &Fragment) {
    assert_tiles(seg);
    let moof = find(seg, b"moof").expect("boxes").expect("moof");
    // Data offsets count from the start of the moof box (its header is 8 bytes).
    let moof_at = moof.as_ptr() as usize - seg.as_ptr() as usize - 8;
    let mdat = find(seg, b"mdat").expect("boxes").expect("mdat");
    let mdat_start = mdat.as_ptr() as usize - seg.as_ptr() as usize;
    let runs = frag.runs();
    let mut trafs = 0;
    let mut total = 0u64;
    for child in boxes(moof) {
        let (kind, body) = child.expect("moof child");
        if &kind != b"traf" {
            continue;
        }
        let run = runs[trafs];
        trafs += 1;
        let held: u64 = run.data.iter().map(|d| d.len() as u64).sum();
        assert_eq!(held, run.bytes(), "a run's sample sizes do not match its data");
        let trun = find(body, b"trun").expect("boxes").expect("trun");
        let mut r = Reader::new(trun);
        let (_, flags) = r.full_header().expect("trun header");
        let count = r.u32().expect("count");
        assert_eq!(count as usize, run.samples.len());
        let offset = r.u32().expect("data offset") as usize;
        let per = 12 + if flags & 0x800 != 0 { 4 } else { 0 };
        let mut sizes = 0u64;
        for _ in 0..count {
            let s = r.take(per).expect("sample entry");
            sizes += u64::from(u32::from_be_bytes([s[4], s[5], s[6], s[7]]));
        }
        assert_eq!(sizes, run.bytes());
        let start = moof_at + offset;
        assert!(start >= mdat_start && start as u64 + sizes <= (mdat_start + mdat.len()) as u64);
        total += sizes;
    }
    assert_eq!(trafs, runs.len());
    assert_eq!(mdat.len() as u64, total, "mdat length vs the runs");
}

/// The iterator fails on a box that overruns the file, so consuming it all means they tile it.
fn assert_tiles(b: &[u8]) {
    for child in boxes(b) {
        child.expect("top-level boxes tile the file");
    }
}
