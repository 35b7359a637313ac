//! The hub's tests: publish, join, fan-out, slow viewers, readers, bridges, in memory.

use super::*;
use crate::amf::{amf0, Value};
use crate::media::frame::{TAG_AUDIO, TAG_SCRIPT, TAG_VIDEO};
use crate::media::{enhanced, Codec};
use bytes::Bytes;

const FLV: OutputForm = OutputForm::HttpFlv {
    chunked: false,
    track: 0,
    aac: false,
};
const RTMP: OutputForm = OutputForm::Rtmp {
    chunk_size: 4096,
    stream_id: 1,
    aac: false,
};

fn key() -> StreamKey {
    StreamKey::new("live", "s").unwrap()
}

fn frame(tag: u8, dts: u32, data: Vec<u8>) -> Frame {
    Frame::parse(tag, dts, Bytes::from(data)).unwrap()
}
fn meta(fields: Vec<(&str, Value)>) -> Frame {
    let mut body = amf0::encode_all(&[Value::string("@setDataFrame")]);
    body.extend(amf0::encode_all(&[
        Value::string("onMetaData"),
        Value::EcmaArray(fields.into_iter().map(|(k, v)| (k.into(), v)).collect()),
    ]));
    frame(TAG_SCRIPT, 0, body)
}
fn av_meta() -> Frame {
    meta(vec![
        ("videocodecid", Value::Number(7.0)),
        ("audiocodecid", Value::Number(10.0)),
        ("width", Value::Number(640.0)),
    ])
}
fn vseq(t: u32) -> Frame {
    frame(TAG_VIDEO, t, vec![0x17, 0, 0, 0, 0, 1, 0x64])
}
fn aseq(t: u32) -> Frame {
    frame(TAG_AUDIO, t, vec![0xaf, 0, 0x12, 0x10])
}
fn vkey(t: u32) -> Frame {
    frame(TAG_VIDEO, t, vec![0x17, 1, 0, 0, 0, 0xaa, (t / 40) as u8])
}
fn vinter(t: u32) -> Frame {
    frame(TAG_VIDEO, t, vec![0x27, 1, 0, 0, 0, 0xbb, (t / 40) as u8])
}
fn audio(t: u32) -> Frame {
    frame(TAG_AUDIO, t, vec![0xaf, 1, 0xcc, (t / 23) as u8])
}

/// Everything queued, as the server would write it.
fn drain(hub: &mut Hub, id: ViewerId) -> Vec<u8> {
    let q = &mut hub.viewer(id).unwrap().queue;
    let mut out = Vec::new();
    while q.write_to(&mut out).unwrap() > 0 {}
    out
}

#[derive(Debug, PartialEq)]
struct Tag {
    tag: u8,
    ts: u32,
    body: Vec<u8>,
}

/// Splits plain FLV bytes into (file header flags, tags), checking every PreviousTagSize.
fn parse_flv(mut b: &[u8], expect_header: bool) -> (Option<u8>, Vec<Tag>) {
    let mut flags = None;
    if expect_header {
        assert_eq!(&b[..3], b"FLV");
        flags = Some(b[4]);
        b = &b[13..];
    }
    let mut tags = Vec::new();
    while !b.is_empty() {
        let len = u32::from_be_bytes([0, b[1], b[2], b[3]]) as usize;
        let ts = u32::from_be_bytes([b[7], b[4], b[5], b[6]]);
        let body = b[11..11 + len].to_vec();
        let pts = u32::from_be_bytes(b[11 + len..15 + len].try_into().unwrap());
        assert_eq!(pts as usize, len + 11);
        tags.push(Tag {
            tag: b[0],
            ts,
            body,
        });
        b = &b[15 + len..];
    }
    (flags, tags)
}

fn tag_of(f: &Frame) -> Tag {
    Tag {
        tag: f.tag_type(),
        ts: f.dts,
        body: meta::on_metadata(&f.data)
            .unwrap_or_else(|| f.data.clone())
            .to_vec(),
    }
}

fn send(hub: &mut Hub, f: Frame) -> (Vec<ViewerId>, Vec<ViewerId>) {
    let out = hub.frame(hub.handle(&key()).unwrap(), 1, f, 0);
    assert!(out.accepted);
    (out.flush.to_vec(), out.too_slow.to_vec())
}

/// (dts, data) of every frame a test reader got.
type Got = std::rc::Rc<std::cell::RefCell<Vec<(u32, Vec<u8>)>>>;
type Flag = std::rc::Rc<std::cell::Cell<bool>>;

/// A reader that records what it got and when it was dropped.
struct Rec {
    got: Got,
    dropped: Flag,
    behind_after: usize,
}

impl Reader for Rec {
    fn deliver(&mut self, f: &Frame) -> ReaderState {
        self.got.borrow_mut().push((f.dts, f.data.to_vec()));
        if self.got.borrow().len() > self.behind_after {
            ReaderState::Behind
        } else {
            ReaderState::Ready
        }
    }
    fn poll(&mut self, _: u64) -> ReaderState {
        ReaderState::Ready
    }
    fn frames_dropped(&self) -> u64 {
        3
    }
}

impl Drop for Rec {
    fn drop(&mut self) {
        self.dropped.set(true);
    }
}

fn rec(behind_after: usize) -> (Rec, Got, Flag) {
    let got = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let dropped = std::rc::Rc::new(std::cell::Cell::new(false));
    let r = Rec {
        got: got.clone(),
        dropped: dropped.clone(),
        behind_after,
    };
    (r, got, dropped)
}

/// A reader that reports one recorder, as the recording pool does.
struct OneRecorder;

impl Reader for OneRecorder {
    fn deliver(&mut self, _: &Frame) -> ReaderState {
        ReaderState::Ready
    }
    fn poll(&mut self, _: u64) -> ReaderState {
        ReaderState::Ready
    }
    fn frames_dropped(&self) -> u64 {
        0
    }
    fn recorders(&self) -> Vec<(&'static str, crate::stats::health::RecorderState)> {
        vec![(
            "flv",
            crate::stats::health::RecorderState::Writing { bytes: 99 },
        )]
    }
}

#[test]
fn sampled_health_and_history_describe_the_stream() {
    let mut hub = Hub::new(HubConfig::default());
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    hub.add_reader(h, Box::new(OneRecorder));
    let (_viewer, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.frame(h, 1, av_meta(), 0);
    hub.frame(h, 1, vseq(0), 0);
    hub.frame(h, 1, aseq(0), 0);
    // A keyframe every 10 s at 25 fps, sent in real time, sampled once a second.
    for t in (0..=10_000u32).step_by(40) {
        let f = if t % 10_000 == 0 { vkey(t) } else { vinter(t) };
        hub.frame(h, 1, f, u64::from(t));
        hub.frame(h, 1, audio(t), u64::from(t));
        if t % 1000 == 0 {
            hub.sample_stats(u64::from(t));
        }
    }
    let j = crate::codec::json::to_string(&hub.health_report(&key(), 10_000).unwrap());
    assert!(j.contains("\"keyframe_interval_ms\":10000"), "{j}");
    assert!(j.contains("\"level\":\"red\""), "{j}");
    assert!(j.contains("\"name\":\"flv\""), "{j}");
    assert!(j.contains("\"bytes\":99"), "{j}");
    assert!(hub
        .health_report(&StreamKey::new("live", "none").unwrap(), 0)
        .is_none());
    let server = crate::stats::history::ServerHistory::new(5_000);
    let hist = hub.history_json(10_000, &server);
    assert!(hist.contains("\"stream\":\"s\""), "{hist}");
    assert!(hist.contains("\"ago_s\":[5,0]"), "{hist}");
    // The viewer is counted per protocol in every sample.
    assert!(hist.contains("\"http_flv\":[1,1]"), "{hist}");
}

#[test]
fn metadata_over_the_cap_is_dropped_and_counted() {
    let mut hub = Hub::new(HubConfig::default());
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    let (r, got, _) = rec(100);
    hub.add_reader(h, Box::new(r));
    let big = meta(vec![(
        "blob",
        Value::String("x".repeat(MAX_METADATA_BYTES)),
    )]);
    assert!(big.data.len() > MAX_METADATA_BYTES);
    hub.frame(h, 1, big, 0);
    hub.frame(h, 1, av_meta(), 0);
    assert_eq!(
        got.borrow().len(),
        1,
        "only the small metadata went through"
    );
    assert_eq!(hub.totals().metadata_dropped, 1);
    assert_eq!(hub.stream(&key()).unwrap().meta.width, Some(640.0));
}

#[test]
fn readers_get_every_frame_in_order_and_end_with_their_session() {
    let mut hub = Hub::new(HubConfig::default());
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    let (r, got, dropped) = rec(5);
    hub.add_reader(h, Box::new(r));
    let frames = [av_meta(), vseq(0), aseq(0), vkey(0), audio(23)];
    for f in &frames {
        assert!(!hub.frame(h, 1, f.clone(), 0).hold_publisher);
    }
    // Over its bound the reader asks for the publisher to be held.
    assert!(hub.frame(h, 1, vinter(40), 40).hold_publisher);
    let got = got.borrow();
    assert_eq!(got.len(), 6);
    // The hub's normalised metadata (no @setDataFrame), then the media unchanged.
    assert_eq!(
        got[0].1,
        crate::media::meta::on_metadata(&frames[0].data)
            .unwrap()
            .to_vec()
    );
    for (g, f) in got[1..].iter().zip(&frames[1..]) {
        assert_eq!(g, &(f.dts, f.data.to_vec()));
    }
    // A publisher taking over an idle one starts with no readers: the old session's end.
    assert!(!dropped.get());
    let h2 = hub.publish(&key(), 2, 60_000).unwrap().handle;
    assert!(dropped.get());
    assert_eq!(h2, h, "the stream (and its players) stay");
    assert_eq!(hub.totals().reader_frames_dropped, 3);
    let (r, _, dropped) = rec(100);
    hub.add_reader(h2, Box::new(r));
    hub.unpublish(h2, 2);
    assert!(dropped.get(), "unpublish drops the readers");
}

#[test]
fn a_primed_reader_starts_from_the_cache_and_is_dropped_when_gone() {
    use std::cell::RefCell;
    use std::rc::Rc;
    /// Frames seen (dts, key, config), and whether its player left.
    type Seen = Rc<RefCell<(Vec<(u32, bool, bool)>, bool)>>;
    struct Late(Seen);
    impl Reader for Late {
        fn deliver(&mut self, f: &Frame) -> ReaderState {
            let mut s = self.0.borrow_mut();
            if s.1 {
                return ReaderState::Gone;
            }
            s.0.push((f.dts, f.key, f.config));
            ReaderState::Ready
        }
        fn poll(&mut self, _now_ms: u64) -> ReaderState {
            if self.0.borrow().1 {
                ReaderState::Gone
            } else {
                ReaderState::Ready
            }
        }
        fn frames_dropped(&self) -> u64 {
            0
        }
    }
    let mut hub = Hub::new(HubConfig::default());
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    assert_eq!(hub.publisher_of(h), Some(1));
    for f in [
        av_meta(),
        vseq(0),
        aseq(0),
        vinter(0),
        vkey(40),
        audio(63),
        vinter(80),
    ] {
        hub.frame(h, 1, f, 0);
    }
    let seen: Seen = Rc::default();
    hub.add_reader_primed(h, Box::new(Late(seen.clone())));
    {
        let s = seen.borrow();
        // Metadata, both sequence headers, then the GOP from its keyframe (not the inter
        // frame before it).
        assert_eq!(s.0.len(), 6, "{:?}", s.0);
        assert!(s.0[1].2 && s.0[2].2, "headers first");
        assert_eq!(s.0[3], (40, true, false), "the GOP's keyframe");
        assert_eq!(s.0[5].0, 80);
    }
    hub.frame(h, 1, vinter(120), 120);
    assert_eq!(seen.borrow().0.len(), 7, "then live frames");
    seen.borrow_mut().1 = true;
    hub.frame(h, 1, vinter(160), 160);
    assert!(
        hub.slot(h).unwrap().readers.is_empty(),
        "a gone reader is dropped"
    );
    hub.unpublish(h, 1);
    assert_eq!(hub.publisher_of(h), None);
}

#[test]
fn a_handle_of_an_ended_session_finds_nothing() {
    let mut hub = Hub::new(HubConfig::default());
    let old = hub.publish(&key(), 1, 0).unwrap().handle;
    hub.unpublish(old, 1);
    let new = hub.publish(&key(), 1, 10).unwrap().handle;
    assert_ne!(old, new);
    // Same key, same publisher token, same slab slot: the generation tells them apart.
    assert!(!hub.frame(old, 1, vseq(0), 20).accepted);
    assert!(hub.unpublish(old, 1).is_empty());
    assert!(hub.is_live(&key()));
    assert!(hub.frame(new, 1, vseq(0), 20).accepted);
    assert_eq!(hub.key(new), Some(&key()));
    assert_eq!(hub.key(old), None);
}

#[test]
fn late_joiner_gets_header_meta_configs_gop_in_order() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let frames = [
        av_meta(),
        vseq(0),
        aseq(0),
        vkey(0),
        audio(0),
        vinter(40),
        audio(23),
        vkey(80),
        audio(46),
        vinter(120),
    ];
    for f in frames.iter().cloned() {
        send(&mut hub, f);
    }
    let (id, live) = hub.add_viewer(&key(), FLV, 7, 0);
    assert!(live);
    hub.start_viewer(id);
    let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
    assert_eq!(flags, Some(5));
    let want: Vec<Tag> = [0, 1, 2, 7, 8, 9]
        .iter()
        .map(|&i| tag_of(&frames[i]))
        .collect();
    assert_eq!(tags, want);
    assert!(tags[0].body.starts_with(b"\x02\x00\x0aonMetaData"));
    // Then live frames follow, once.
    let (flush, _) = send(&mut hub, audio(69));
    assert_eq!(flush, vec![id]);
    let (_, tags) = parse_flv(&drain(&mut hub, id), false);
    assert_eq!(tags, vec![tag_of(&audio(69))]);
    let st = hub.streams().next().unwrap();
    assert_eq!(st.viewers_http_flv, 1);
    assert_eq!(st.meta.width, Some(640.0));
    assert_eq!(st.video_codec, Some(Codec::Avc));
    assert_eq!(st.frames_in, 11);
    assert!(st.bytes_out > 0);
    assert_eq!(hub.totals().bytes_out, st.bytes_out);
}

/// Enhanced RTMP v2 multitrack: the second audio track's sequence header (OneTrack,
/// SequenceStart, mp4a, track 1, as FFmpeg 9 writes it) reaches a late RTMP joiner after
/// the default track's, and a newer one replaces it; FLV viewers get the default track
/// alone.
#[test]
fn late_joiner_gets_every_tracks_sequence_header() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let track1 = |b: &'static [u8]| frame(TAG_AUDIO, 0, b.to_vec());
    let seq1 = track1(b"\x95\x00mp4a\x01\x11\x88\x56\xe5\x00");
    let seq1b = track1(b"\x95\x00mp4a\x01\x12\x10\x56\xe5\x00");
    let frame1 = track1(b"\x95\x01mp4a\x01\x21\x22");
    assert_eq!((seq1.track_id, seq1.config), (1, false));
    let frames = [av_meta(), vseq(0), aseq(0), seq1, seq1b.clone(), vkey(0)];
    for f in frames.iter().cloned() {
        send(&mut hub, f);
    }
    let (rtmp, _) = hub.add_viewer(&key(), RTMP, 7, 0);
    hub.start_viewer(rtmp);
    let got = drain(&mut hub, rtmp);
    // The metadata as the hub relays it (without @setDataFrame), then the headers.
    let mut relayed_meta = frames[0].clone();
    relayed_meta.data = meta::on_metadata(&frames[0].data).unwrap();
    let want: Vec<u8> = [&relayed_meta, &frames[1], &frames[2], &seq1b, &frames[5]]
        .iter()
        .flat_map(|f| {
            Packet::new(RTMP, f, &packet::TrackSet::default(), 0, false)
                .unwrap()
                .data
                .to_vec()
        })
        .collect();
    assert_eq!(got, want);

    let (flv, _) = hub.add_viewer(&key(), FLV, 8, 0);
    hub.start_viewer(flv);
    let (_, tags) = parse_flv(&drain(&mut hub, flv), true);
    let want: Vec<Tag> = [&frames[0], &frames[1], &frames[2], &frames[5]]
        .iter()
        .map(|f| tag_of(f))
        .collect();
    assert_eq!(tags, want);
    // Live: RTMP gets track 1's frame as published; FLV nothing of it.
    let (flush, _) = send(&mut hub, frame1.clone());
    assert_eq!(flush, vec![rtmp]);
    assert!(hub.viewer(flv).unwrap().queue.is_empty());
    assert_eq!(hub.streams().next().unwrap().audio_codec, Some(Codec::Aac));
}

/// `?track=N`: an FLV viewer of track 1 gets audio track 1 in plain form (its header and
/// frames, none of track 0's audio) and the stream's one video track; a viewer of a track
/// the stream does not have gets the default tracks, like a viewer without `?track`.
#[test]
fn flv_viewer_of_track_1_gets_that_audio_track_and_the_one_video_track() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let track1 = |ts: u32, b: &'static [u8]| frame(TAG_AUDIO, ts, b.to_vec());
    let seq1 = track1(0, b"\x95\x00mp4a\x01\x12\x10\x56\xe5\x00");
    let frame1 = track1(40, b"\x95\x01mp4a\x01\x21\x22");
    let plain = |f: &Frame| Frame {
        data: enhanced::single_track(enhanced::Media::Audio, &f.data, 1)
            .unwrap()
            .unwrap(),
        ..f.clone()
    };
    for f in [av_meta(), vseq(0), aseq(0), seq1.clone(), vkey(0)] {
        send(&mut hub, f);
    }
    let form = |track| OutputForm::HttpFlv {
        chunked: false,
        track,
        aac: false,
    };
    let (one, _) = hub.add_viewer(&key(), form(1), 7, 0);
    let (absent, _) = hub.add_viewer(&key(), form(5), 8, 0);
    let (default, _) = hub.add_viewer(&key(), FLV, 9, 0);
    for id in [one, absent, default] {
        hub.start_viewer(id);
    }
    let (_, tags) = parse_flv(&drain(&mut hub, one), true);
    let want: Vec<Tag> = [av_meta(), vseq(0), plain(&seq1), vkey(0)]
        .iter()
        .map(tag_of)
        .collect();
    assert_eq!(tags, want);
    assert_eq!(tags[2].body[0] >> 4, 9, "a plain Ex audio tag");
    let default_tags = parse_flv(&drain(&mut hub, default), true).1;
    assert_eq!(parse_flv(&drain(&mut hub, absent), true).1, default_tags);
    assert_eq!(default_tags[2], tag_of(&aseq(0)));
    // Live: track 0's audio goes to the default viewers only, track 1's to the track-1 one.
    let (flush, _) = send(&mut hub, audio(20));
    assert_eq!(flush, vec![absent, default]);
    let (flush, _) = send(&mut hub, frame1.clone());
    assert_eq!(flush, vec![one]);
    assert_eq!(
        parse_flv(&drain(&mut hub, one), false).1,
        vec![tag_of(&plain(&frame1))]
    );
    for id in [absent, default] {
        assert_eq!(
            parse_flv(&drain(&mut hub, id), false).1,
            vec![tag_of(&audio(20))]
        );
    }
    let (flush, _) = send(&mut hub, vinter(40));
    assert_eq!(
        flush,
        vec![one, absent, default],
        "video reaches every viewer"
    );
}

#[test]
fn flv_header_flags_for_audio_only_and_video_only() {
    // From metadata that describes the tracks: known before any media.
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    send(&mut hub, meta(vec![("audiocodecid", Value::Number(10.0))]));
    let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(id);
    assert_eq!(parse_flv(&drain(&mut hub, id), true).0, Some(4));

    // Without metadata: from the tracks seen once a media frame comes.
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    send(&mut hub, vseq(0));
    let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(id);
    assert!(
        hub.viewer(id).unwrap().queue.is_empty(),
        "tracks not known yet"
    );
    let (flush, _) = send(&mut hub, vkey(0));
    assert_eq!(flush, vec![id]);
    let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
    assert_eq!(flags, Some(1));
    assert_eq!(tags, vec![tag_of(&vseq(0)), tag_of(&vkey(0))]);
    send(&mut hub, vinter(40));
    assert_eq!(
        parse_flv(&drain(&mut hub, id), false).1,
        vec![tag_of(&vinter(40))]
    );
}

#[test]
fn audio_only_joiner_gets_the_last_second() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    send(&mut hub, aseq(0));
    for i in 0..100 {
        send(&mut hub, audio(i * 23));
    }
    let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(id);
    let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
    assert_eq!(flags, Some(4));
    assert_eq!(tags[0], tag_of(&aseq(0)));
    let first = tags[1].ts;
    assert_eq!(tags.last().unwrap().ts, 99 * 23);
    assert!(99 * 23 - first <= 1000 && 99 * 23 - first > 950);
}

#[test]
fn no_gop_cache_joiner_waits_for_the_next_keyframe() {
    let mut hub = Hub::new(HubConfig {
        gop_cache: false,
        ..HubConfig::default()
    });
    hub.publish(&key(), 1, 0).unwrap();
    for f in [av_meta(), vseq(0), aseq(0), vkey(0), audio(0), vinter(40)] {
        send(&mut hub, f);
    }
    let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(id);
    for f in [audio(23), vinter(80), audio(46), vkey(120), audio(69)] {
        send(&mut hub, f);
    }
    let (flags, tags) = parse_flv(&drain(&mut hub, id), true);
    assert_eq!(flags, Some(5));
    let want: Vec<Tag> = [av_meta(), vseq(0), aseq(0), vkey(120), audio(69)]
        .iter()
        .map(tag_of)
        .collect();
    assert_eq!(tags, want);
    assert_eq!(hub.viewer(id).unwrap().queue.stats.frames_dropped, 0);
}

#[test]
fn waiting_viewers_get_everything_when_the_publisher_starts() {
    let mut hub = Hub::new(HubConfig::default());
    let (flv, live) = hub.add_viewer(&key(), FLV, 7, 0);
    assert!(!live);
    let head = Bytes::from_static(b"HTTP/1.1 200 OK\r\n\r\n");
    hub.viewer(flv).unwrap().queue.push_control(head.clone());
    hub.start_viewer(flv);
    assert_eq!(drain(&mut hub, flv), head);
    let (rtmp, _) = hub.add_viewer(&key(), RTMP, 8, 0);
    hub.start_viewer(rtmp);
    assert!(!hub.is_live(&key()));
    let ok = hub.publish(&key(), 1, 0).unwrap();
    assert_eq!(ok.took_over_from, None);
    assert_eq!(ok.waiting_viewers, vec![flv, rtmp]);
    let frames = [av_meta(), vseq(0), aseq(0), vkey(0), audio(0)];
    let mut flushed = Vec::new();
    for f in frames.iter().cloned() {
        flushed.extend(send(&mut hub, f).0);
    }
    assert!(flushed.contains(&flv) && flushed.contains(&rtmp));
    let (flags, tags) = parse_flv(&drain(&mut hub, flv), true);
    assert_eq!(flags, Some(5));
    assert_eq!(tags, frames.iter().map(tag_of).collect::<Vec<_>>());
    assert!(!drain(&mut hub, rtmp).is_empty());
}

#[test]
fn second_publisher_is_busy_and_an_idle_one_is_taken_over() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    send(&mut hub, vseq(0));
    send(&mut hub, vkey(0));
    let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(id);
    drain(&mut hub, id);
    assert!(
        hub.frame(hub.handle(&key()).unwrap(), 1, vinter(40), 1000)
            .accepted
    );
    assert_eq!(hub.publish(&key(), 2, 5999), Err(PublishError::Busy));
    let ok = hub.publish(&key(), 2, 6000).unwrap();
    assert_eq!(ok.took_over_from, Some(1));
    assert!(ok.waiting_viewers.is_empty());
    // The old publisher is ignored now; the viewer stays and resumes at the new keyframe.
    assert!(
        !hub.frame(hub.handle(&key()).unwrap(), 1, vinter(80), 6001)
            .accepted
    );
    assert!(hub.unpublish(hub.handle(&key()).unwrap(), 1).is_empty());
    assert!(
        hub.frame(hub.handle(&key()).unwrap(), 2, vinter(0), 6002)
            .accepted
    );
    assert!(
        hub.frame(hub.handle(&key()).unwrap(), 2, vseq(0), 6002)
            .accepted
    );
    assert!(
        hub.frame(hub.handle(&key()).unwrap(), 2, vkey(40), 6003)
            .accepted
    );
    let (_, tags) = parse_flv(&drain(&mut hub, id), false);
    assert_eq!(
        tags,
        vec![tag_of(&vinter(40)), tag_of(&vseq(0)), tag_of(&vkey(40))]
    );
}

#[test]
fn unpublish_ends_and_returns_the_viewers() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(a);
    let (b, _) = hub.add_viewer(&key(), RTMP, 8, 0);
    hub.start_viewer(b);
    let mut ended = hub.unpublish(hub.handle(&key()).unwrap(), 1);
    ended.sort();
    assert_eq!(ended, vec![a, b]);
    assert_eq!(hub.viewer(a).unwrap().ended, Some(ViewerEnd::Unpublished));
    assert!(!hub.is_live(&key()));
    assert_eq!(hub.streams().count(), 0);
    hub.remove_viewer(a);
    hub.remove_viewer(b);
    assert_eq!(hub.totals().viewers, 0);
    // The key is free again.
    hub.publish(&key(), 3, 10).unwrap();
}

#[test]
fn slow_viewer_skips_then_is_disconnected_and_others_get_everything() {
    let mut hub = Hub::new(HubConfig {
        queue_soft_ms: 1000,
        queue_hard_ms: 3000,
        ..HubConfig::default()
    });
    hub.publish(&key(), 1, 0).unwrap();
    send(&mut hub, vseq(0));
    let (slow, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(slow);
    let (good, _) = hub.add_viewer(&key(), FLV, 8, 0);
    hub.start_viewer(good);
    drain(&mut hub, good);
    let mut sent = Vec::new();
    let mut slow_tags = Vec::new();
    let mut t = 0;
    let mut disconnected = false;
    let mut good_tags = Vec::new();
    // Keyframe every 400 ms, a frame every 40 ms. The slow viewer writes its FLV header,
    // the sequence header and 5 bytes of the first keyframe's tag, then stops reading.
    while t < 6000 && !disconnected {
        let f = if t % 400 == 0 { vkey(t) } else { vinter(t) };
        sent.push(tag_of(&f));
        let (_, too_slow) = send(&mut hub, f);
        if t == 0 {
            hub.viewer(slow).unwrap().queue.advance(13 + 22 + 5);
        }
        if too_slow == vec![slow] {
            disconnected = true;
            assert_eq!(hub.viewer(slow).unwrap().ended, Some(ViewerEnd::TooSlow));
            // What the slow viewer would still write: the rest of its partly written
            // tag, then only whole GOPs starting at keyframes.
            let bytes = drain(&mut hub, slow);
            let mut first = Vec::new();
            crate::mux::flv::write_tag(&mut first, &vkey(0));
            assert_eq!(&bytes[..first.len() - 5], &first[5..]);
            slow_tags = parse_flv(&bytes[first.len() - 5..], false).1;
        }
        let (_, tags) = parse_flv(&drain(&mut hub, good), t == 0);
        assert_eq!(tags.last(), sent.last());
        good_tags.extend(tags);
        t += 40;
    }
    assert!(disconnected, "the never-reading viewer must be reported");
    // Skips at 1080 and 2240 (span over 1000 ms), resumes at 1200 and 2400; the lag,
    // measured from the frame at 0 it started with, first exceeds 3000 ms at 3040.
    assert_eq!(t - 40, 3040);
    let mut want = vec![tag_of(&vseq(0))];
    want.extend(sent);
    assert_eq!(good_tags, want, "the reading viewer got every frame");
    let stats = hub.viewer(slow).unwrap().queue.stats;
    assert!(stats.skips >= 2 && stats.frames_dropped > 0 && stats.bytes_dropped > 0);
    assert_eq!(hub.viewer(good).unwrap().queue.stats.skips, 0);
    // Remaining queue after the partial tag: from a keyframe on, contiguous frames:
    // never a partial GOP.
    assert_eq!(slow_tags[0].ts, 2400);
    assert_eq!(slow_tags[0].body[0], 0x17);
    for w in slow_tags.windows(2) {
        assert_eq!(w[1].ts, w[0].ts + 40);
    }
    assert_eq!(hub.totals().slow_disconnects, 1);
    // No more media for an ended viewer.
    send(&mut hub, vinter(t));
    assert!(hub.viewer(slow).unwrap().queue.is_empty());
}

#[test]
fn packets_are_shared_by_viewers_of_a_form_and_the_cache() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(a);
    let (b, _) = hub.add_viewer(&key(), FLV, 8, 0);
    hub.start_viewer(b);
    let (c, _) = hub.add_viewer(&key(), RTMP, 9, 0);
    hub.start_viewer(c);
    send(&mut hub, vseq(0));
    send(&mut hub, vkey(0));
    // A late joiner of the same form gets the cached packets, not new copies.
    let (d, _) = hub.add_viewer(&key(), FLV, 10, 0);
    hub.start_viewer(d);
    let mut starts = |id: ViewerId| -> Vec<usize> {
        let mut slices = Vec::new();
        hub.viewer(id).unwrap().queue.io_slices(&mut slices, 100);
        slices.iter().map(|s| s.as_ptr() as usize).collect()
    };
    let (sa, sb, sc, sd) = (starts(a), starts(b), starts(c), starts(d));
    // FLV viewers: file header (their own), sequence header, keyframe.
    assert_eq!(sa.len(), 3);
    assert_eq!(sa[1..], sb[1..]);
    assert_eq!(sa[1..], sd[1..]);
    // Another form has packets of its own.
    assert!(sc.iter().all(|p| !sa.contains(p)));
}

#[test]
fn pause_and_receive_video() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let (id, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(id);
    for f in [vseq(0), aseq(0), vkey(0), audio(0)] {
        send(&mut hub, f);
    }
    drain(&mut hub, id);
    hub.set_paused(id, true);
    send(&mut hub, vinter(40));
    assert!(hub.viewer(id).unwrap().queue.is_empty());
    hub.set_paused(id, false);
    for f in [vinter(80), audio(90), vkey(120)] {
        send(&mut hub, f);
    }
    let (_, tags) = parse_flv(&drain(&mut hub, id), false);
    assert_eq!(
        tags,
        [vseq(0), aseq(0), vkey(120)]
            .iter()
            .map(tag_of)
            .collect::<Vec<_>>()
    );
    hub.set_receive_video(id, false);
    send(&mut hub, vinter(160));
    send(&mut hub, audio(170));
    hub.set_receive_video(id, true);
    send(&mut hub, vinter(200));
    send(&mut hub, audio(210));
    send(&mut hub, vkey(240));
    let (_, tags) = parse_flv(&drain(&mut hub, id), false);
    assert_eq!(
        tags,
        [audio(170), vseq(0), audio(210), vkey(240)]
            .iter()
            .map(tag_of)
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_viewer_is_small() {
    // Per-viewer memory beyond the shared packets: the struct, its key and the queue's
    // entries (40 bytes each).
    assert!(
        std::mem::size_of::<Viewer>() <= 400,
        "{}",
        std::mem::size_of::<Viewer>()
    );
}

#[test]
fn removing_viewers_keeps_the_lists_consistent() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    let ids: Vec<_> = (0..5)
        .map(|t| {
            let (id, _) = hub.add_viewer(&key(), FLV, t, 0);
            hub.start_viewer(id);
            id
        })
        .collect();
    send(&mut hub, vseq(0));
    send(&mut hub, vkey(0));
    hub.remove_viewer(ids[1]);
    hub.remove_viewer(ids[0]);
    let (flush, _) = send(&mut hub, vinter(40));
    assert!(flush.is_empty(), "queues were not drained");
    for &id in &ids[2..] {
        let (_, tags) = parse_flv(&drain(&mut hub, id), true);
        assert_eq!(tags.len(), 3);
    }
    let (flush, _) = send(&mut hub, vinter(80));
    let mut flush = flush;
    flush.sort();
    assert_eq!(flush, ids[2..].to_vec());
    assert_eq!(hub.streams().next().unwrap().viewers_http_flv, 3);
    // A stream without publisher disappears with its last viewer.
    hub.unpublish(hub.handle(&key()).unwrap(), 1);
    for &id in &ids[2..] {
        hub.remove_viewer(id);
    }
    let (w, _) = hub.add_viewer(&key(), FLV, 9, 0);
    assert_eq!(hub.streams().count(), 1);
    hub.remove_viewer(w);
    assert_eq!(hub.streams().count(), 0);
}

/// Writes up to `n` bytes of `id`'s queue (all of it for `usize::MAX`), as a socket would.
fn write_some(hub: &mut Hub, id: ViewerId, n: usize) -> Vec<u8> {
    let q = &mut hub.viewer(id).unwrap().queue;
    let mut out = Vec::new();
    let mut slices = Vec::new();
    q.io_slices(&mut slices, usize::MAX);
    for s in &slices {
        let k = s.len().min(n - out.len());
        out.extend_from_slice(&s[..k]);
    }
    q.advance(out.len());
    out
}

#[test]
fn a_viewer_that_follows_the_log_gets_what_per_packet_pushes_give() {
    // Two viewers of one form see the same frames, writes, pauses and track switches; one
    // follows the log whenever it drained, the other is pushed every packet. Their bytes,
    // counters and verdicts must be the same at every step.
    let mut hub = Hub::new(HubConfig {
        queue_soft_ms: 600,
        queue_hard_ms: 2500,
        ..HubConfig::default()
    });
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    for f in [av_meta(), vseq(0), aseq(0), vkey(0)] {
        hub.frame(h, 1, f, 0);
    }
    let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(a);
    let (b, _) = hub.add_viewer(&key(), FLV, 8, 0);
    hub.start_viewer(b);
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut followed, mut flushed_edge, mut stall_until) = (0, 0, 0);
    for step in 1..3000u32 {
        let t = step * 20;
        let f = if step % 2 == 1 {
            audio(t)
        } else if t % 800 == 0 {
            vkey(t)
        } else {
            vinter(t)
        };
        let out = hub.frame(h, 1, f, u64::from(t));
        let (flush, slow) = (out.flush.to_vec(), out.too_slow.to_vec());
        flushed_edge += usize::from(flush.contains(&a) && hub.is_following(a));
        assert_eq!(slow.contains(&a), slow.contains(&b), "step {step}");
        if slow.contains(&a) {
            break;
        }
        let action = if step < stall_until { 99 } else { next(40) };
        match action {
            // A stall: neither reads for a while (long ones make both skip).
            0 | 99 => {
                if action == 0 && step < 2000 {
                    stall_until = step + 10 + next(60) as u32;
                }
            }
            1 => {
                let on = next(2) == 0;
                hub.set_paused(a, on);
                hub.set_paused(b, on);
            }
            2 => {
                let on = next(3) != 0;
                hub.set_receive_video(a, on);
                hub.set_receive_video(b, on);
            }
            3 => {
                let on = next(3) != 0;
                hub.set_receive_audio(a, on);
                hub.set_receive_audio(b, on);
            }
            k => {
                let n = if k < 10 {
                    next(40) as usize
                } else {
                    usize::MAX
                };
                let (wa, wb) = (write_some(&mut hub, a, n), write_some(&mut hub, b, n));
                assert_eq!(wa, wb, "step {step}");
                hub.follow(a);
                followed += usize::from(hub.is_following(a));
            }
        }
        let sa = hub.viewer(a).unwrap().stats();
        assert_eq!(sa, hub.viewer_ref(b).unwrap().stats(), "step {step}");
        assert!(!hub.is_following(a), "touched: settled");
        hub.follow(a);
        assert!(!hub.is_following(b));
    }
    assert!(
        followed > 500 && flushed_edge > 500,
        "{followed} {flushed_edge}"
    );
    let st = hub.viewer(a).unwrap().stats();
    assert!(st.skips > 0 && st.frames_dropped > 0, "{st:?}");
    assert_eq!(
        write_some(&mut hub, a, usize::MAX),
        write_some(&mut hub, b, usize::MAX)
    );
}

#[test]
fn followers_cost_nothing_per_frame_and_settle_in_order() {
    let mut hub = Hub::new(HubConfig::default());
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    send(&mut hub, vseq(0));
    send(&mut hub, vkey(0));
    let ids: Vec<_> = (0..4)
        .map(|t| {
            let (id, _) = hub.add_viewer(&key(), FLV, t, 0);
            hub.start_viewer(id);
            drain(&mut hub, id);
            hub.follow(id);
            assert!(hub.is_following(id));
            id
        })
        .collect();
    let s = |hub: &Hub| {
        let st = hub.stream(&key()).unwrap();
        (st.pushed.len(), st.logs[0].idle.len(), st.logs[0].pending)
    };
    assert_eq!(s(&hub), (0, 4, 0), "no viewer is pushed");
    // The first frame lists every follower once; later ones list nobody.
    let (mut flush, _) = send(&mut hub, vinter(40));
    flush.sort();
    assert_eq!(flush, ids);
    assert!(send(&mut hub, audio(50)).0.is_empty());
    assert!(send(&mut hub, vinter(80)).0.is_empty());
    assert_eq!(s(&hub), (0, 0, 4));
    // A follower removed while pending, one settled: the others keep the log.
    hub.remove_viewer(ids[0]);
    let (_, tags) = parse_flv(&drain(&mut hub, ids[1]), false);
    assert_eq!(
        tags,
        [vinter(40), audio(50), vinter(80)]
            .iter()
            .map(tag_of)
            .collect::<Vec<_>>()
    );
    assert_eq!(s(&hub), (1, 0, 2));
    assert_eq!(hub.stream(&key()).unwrap().logs[0].packets.len(), 3);
    hub.follow(ids[1]);
    // The publisher leaves: the pending followers get their packets before the end.
    let ended = hub.unpublish(h, 1);
    assert_eq!(ended.len(), 3);
    for &id in &ids[2..] {
        let (_, tags) = parse_flv(&drain(&mut hub, id), false);
        assert_eq!(tags.len(), 3, "viewer {id}");
    }
    assert!(drain(&mut hub, ids[1]).is_empty());
}

#[test]
fn a_follower_never_settled_is_ended_when_the_log_overflows() {
    let mut hub = Hub::new(HubConfig::default());
    hub.publish(&key(), 1, 0).unwrap();
    send(&mut hub, vseq(0));
    send(&mut hub, vkey(0));
    let (stuck, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(stuck);
    drain(&mut hub, stuck);
    hub.follow(stuck);
    let mut t = 0;
    for _ in 0..stream::LOG_MAX + 1 {
        t += 10;
        let (_, slow) = send(&mut hub, audio(t));
        assert!(slow.is_empty());
    }
    assert_eq!(
        hub.stream(&key()).unwrap().logs[0].packets.len(),
        stream::LOG_MAX
    );
    // Touched at last: ended, reported with the next frame, its log emptied.
    assert_eq!(hub.viewer(stuck).unwrap().ended, Some(ViewerEnd::TooSlow));
    assert_eq!(send(&mut hub, audio(t + 10)).1, vec![stuck]);
    assert!(send(&mut hub, audio(t + 20)).1.is_empty());
    assert!(hub.stream(&key()).unwrap().logs[0].packets.is_empty());
    assert_eq!(hub.totals().slow_disconnects, 1);
}

/// Writes up to `n` bytes of what `id` has, as a socket would: straight from its log when
/// `hub.edge` allows (reported with `edge_written`), else from its queue. Returns the bytes
/// and whether they came from the log.
fn write_edge_some(hub: &mut Hub, id: ViewerId, n: usize) -> (Vec<u8>, bool) {
    let Some(edge) = hub.edge(id) else {
        return (write_some(hub, id, n), false);
    };
    let mut slices = vec![std::io::IoSlice::new(&[]); edge.count()];
    let k = edge.slices(&mut slices);
    assert_eq!(k, edge.count());
    let total = edge.bytes();
    let mut out = Vec::new();
    for s in &slices[..k] {
        let m = s.len().min(n - out.len());
        out.extend_from_slice(&s[..m]);
    }
    assert_eq!(slices[..k].iter().map(|s| s.len()).sum::<usize>(), total);
    hub.edge_written(id, out.len(), total);
    (out, true)
}

#[test]
fn a_follower_written_from_the_log_gets_what_per_packet_pushes_give() {
    // As above, but the follower is written straight from its log whenever `edge` allows
    // (whole or in part), and is touched only by writes and filter changes: runs of several
    // packets build up between writes. Bytes, counters and verdicts must match the pushed
    // viewer's at every write.
    let mut hub = Hub::new(HubConfig {
        queue_soft_ms: 600,
        queue_hard_ms: 2500,
        ..HubConfig::default()
    });
    let h = hub.publish(&key(), 1, 0).unwrap().handle;
    for f in [av_meta(), vseq(0), aseq(0), vkey(0)] {
        hub.frame(h, 1, f, 0);
    }
    let (a, _) = hub.add_viewer(&key(), FLV, 7, 0);
    hub.start_viewer(a);
    let (b, _) = hub.add_viewer(&key(), FLV, 8, 0);
    hub.start_viewer(b);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let (mut whole, mut part, mut stall_until) = (0, 0, 0);
    for step in 1..4000u32 {
        let t = step * 20;
        let f = if step % 2 == 1 {
            audio(t)
        } else if t % 800 == 0 {
            vkey(t)
        } else {
            vinter(t)
        };
        let out = hub.frame(h, 1, f, u64::from(t));
        let slow = out.too_slow.to_vec();
        assert_eq!(slow.contains(&a), slow.contains(&b), "step {step}");
        if slow.contains(&a) {
            break;
        }
        let action = if step < stall_until { 99 } else { next(30) };
        match action {
            // A stall: neither reads for a while (long ones make both skip).
            99 => {}
            0 if step < 3000 => stall_until = step + 10 + next(60) as u32,
            1 if next(4) == 0 => {
                let on = next(2) == 0;
                hub.set_paused(a, on);
                hub.set_paused(b, on);
            }
            2 if next(4) == 0 => {
                let on = next(3) != 0;
                hub.set_receive_video(a, on);
                hub.set_receive_video(b, on);
            }
            3 if next(4) == 0 => {
                let on = next(3) != 0;
                hub.set_receive_audio(a, on);
                hub.set_receive_audio(b, on);
            }
            k @ 8..30 => {
                let n = if k < 18 {
                    next(300) as usize
                } else {
                    usize::MAX
                };
                let (wa, edge) = write_edge_some(&mut hub, a, n);
                let wb = write_some(&mut hub, b, n);
                assert_eq!(wa, wb, "step {step}");
                if edge {
                    if hub.is_following(a) {
                        whole += 1;
                    } else {
                        part += 1;
                    }
                }
                if hub.is_following(a) {
                    // Still following: nothing of it is queued.
                    assert!(hub.viewer_ref(a).unwrap().queue.is_empty());
                    assert_eq!(hub.viewer_ref(b).unwrap().queue.queued_bytes(), 0);
                } else {
                    hub.follow(a);
                }
                assert_eq!(
                    hub.viewer_ref(a).unwrap().stats(),
                    hub.viewer_ref(b).unwrap().stats(),
                    "step {step}"
                );
            }
            _ => {}
        }
        assert!(!hub.is_following(b));
    }
    assert!(whole > 200 && part > 10, "{whole} {part}");
    let st = hub.viewer(a).unwrap().stats();
    assert!(st.skips > 0 && st.frames_dropped > 0, "{st:?}");
    assert_eq!(
        write_some(&mut hub, a, usize::MAX),
        write_some(&mut hub, b, usize::MAX)
    );
}

#[test]
fn an_ended_opus_publishs_recorders_get_the_bridges_tail_before_they_end() {
    use std::cell::{Cell, RefCell};
    use std::rc::Rc;
    #[derive(Default)]
    struct Shared {
        made: RefCell<Vec<Frame>>,
        asked: Cell<bool>,
        done: Cell<bool>,
        got: RefCell<Vec<(u32, bool)>>,
        dropped: Cell<bool>,
    }
    struct Fake(Rc<Shared>);
    impl bridge::AudioBridge for Fake {
        fn push(&mut self, _f: &Frame) -> bool {
            true
        }
        fn poll(&mut self) -> Option<Frame> {
            let mut m = self.0.made.borrow_mut();
            (!m.is_empty()).then(|| m.remove(0))
        }
        fn finish(&mut self) -> bool {
            self.0.asked.set(true);
            true
        }
        fn finished(&self) -> bool {
            self.0.done.get()
        }
    }
    struct Rec(Rc<Shared>);
    impl Reader for Rec {
        fn deliver(&mut self, f: &Frame) -> ReaderState {
            self.0.got.borrow_mut().push((f.dts, f.bridged));
            ReaderState::Ready
        }
        fn poll(&mut self, _now_ms: u64) -> ReaderState {
            ReaderState::Ready
        }
        fn frames_dropped(&self) -> u64 {
            0
        }
    }
    impl Drop for Rec {
        fn drop(&mut self) {
            self.0.dropped.set(true);
        }
    }
    let aac = |t: u32| frame(TAG_AUDIO, t, vec![0xaf, 1, 0x11, 0x90]);
    for finishes in [true, false] {
        let sh = Rc::new(Shared::default());
        let mut hub = Hub::new(HubConfig::default());
        let b = sh.clone();
        hub.set_bridge_factory(Box::new(move |_| Some(Box::new(Fake(b.clone())))));
        let h = hub.publish(&key(), 1, 0).unwrap().handle;
        hub.add_reader(h, Box::new(Rec(sh.clone())));
        hub.frame(h, 1, vseq(0), 0);
        hub.frame(
            h,
            1,
            frame(TAG_AUDIO, 0, b"\x90OpusOpusHead\x01\x02\x38\x01".to_vec()),
            0,
        );
        hub.frame(
            h,
            1,
            frame(TAG_AUDIO, 20, b"\x91Opus\xfc\xff\xfe".to_vec()),
            20,
        );
        hub.unpublish(h, 1);
        assert!(sh.asked.get(), "the bridge is asked to finish");
        assert!(!sh.dropped.get(), "the recorder waits for the tail");
        assert!(hub.bridges_draining());
        hub.poll_bridges(100);
        assert!(!sh.dropped.get(), "nothing came yet");
        if finishes {
            // The tail, then the bridge says it is done: the recorder gets it, then ends.
            sh.made.borrow_mut().extend([aac(0), aac(21)]);
            sh.done.set(true);
            hub.poll_bridges(150);
            let got = sh.got.borrow().clone();
            assert_eq!(&got[got.len() - 2..], &[(0, true), (21, true)], "{got:?}");
        } else {
            // A bridge that never finishes is given up on after DRAIN_GIVE_UP_MS.
            hub.poll_bridges(100 + bridge::DRAIN_GIVE_UP_MS - 1);
            assert!(!sh.dropped.get());
            hub.poll_bridges(100 + bridge::DRAIN_GIVE_UP_MS);
        }
        assert!(sh.dropped.get(), "the recorder ended");
        assert!(!hub.bridges_draining());
        assert_eq!(hub.totals().bridges.started, 1);
    }
}

#[test]
fn an_opus_streams_bridged_aac_reaches_the_aac_viewers_and_only_them() {
    use std::cell::RefCell;
    use std::collections::VecDeque;
    use std::rc::Rc;
    type Q = Rc<RefCell<VecDeque<Frame>>>;
    struct Fake {
        pushed: Q,
        made: Q,
    }
    impl bridge::AudioBridge for Fake {
        fn push(&mut self, f: &Frame) -> bool {
            self.pushed.borrow_mut().push_back(f.clone());
            true
        }
        fn poll(&mut self) -> Option<Frame> {
            self.made.borrow_mut().pop_front()
        }
    }
    let (pushed, made): (Q, Q) = Default::default();
    let mut hub = Hub::new(HubConfig::default());
    let (p, m) = (pushed.clone(), made.clone());
    let mut started = 0;
    hub.set_bridge_factory(Box::new(move |_| {
        started += 1;
        assert_eq!(started, 1, "one bridge per stream");
        Some(Box::new(Fake {
            pushed: p.clone(),
            made: m.clone(),
        }))
    }));
    hub.publish(&key(), 1, 0).unwrap();
    let flv = |aac| OutputForm::HttpFlv {
        chunked: false,
        track: 0,
        aac,
    };
    let (aac, _) = hub.add_viewer(&key(), flv(true), 7, 0);
    let (opus, _) = hub.add_viewer(&key(), flv(false), 8, 0);
    for id in [aac, opus] {
        hub.start_viewer(id);
    }
    let head = frame(TAG_AUDIO, 0, b"\x90OpusOpusHead\x01\x02\x38\x01".to_vec());
    let packet = |t| frame(TAG_AUDIO, t, b"\x91Opus\xfc\xff\xfe".to_vec());
    // What the worker would hand back: an AAC sequence header, then AAC frames.
    let aac_frame = |t, cfg: bool| frame(TAG_AUDIO, t, vec![0xaf, u8::from(!cfg), 0x11, 0x90]);
    send(&mut hub, vseq(0));
    send(&mut hub, head.clone());
    send(&mut hub, vkey(0));
    for t in [20, 40, 60] {
        send(&mut hub, packet(t));
    }
    let audio_of = |hub: &mut Hub, id, first| -> Vec<Vec<u8>> {
        parse_flv(&drain(hub, id), first)
            .1
            .into_iter()
            .filter(|t| t.tag == TAG_AUDIO)
            .map(|t| t.body)
            .collect()
    };
    // Before the bridge's AAC: the Opus viewer got the Opus, the AAC viewer no audio.
    let a = audio_of(&mut hub, aac, true);
    assert!(a.is_empty(), "{a:?}");
    let o = audio_of(&mut hub, opus, true);
    assert_eq!(o.len(), 4, "{o:?}");
    assert!(o.iter().all(|b| b[0] >> 4 == 9), "{o:?}");
    let got: Vec<u32> = pushed.borrow().iter().map(|f| f.dts).collect();
    assert_eq!(
        got,
        vec![0, 20, 40, 60],
        "the bridge gets the Opus in order"
    );
    // In stream time, from the input's (the normaliser's, not the publisher's).
    let base = pushed.borrow()[0].time;
    made.borrow_mut()
        .extend([(0, true), (0, false), (21, false)].map(|(t, cfg)| Frame {
            time: base + t as u64,
            ..aac_frame(t, cfg)
        }));
    let out = hub.poll_bridges(0);
    assert_eq!(out.flush, &[aac][..]);
    // The AAC viewer gets the AAC, the Opus viewer nothing of it.
    let a = audio_of(&mut hub, aac, false);
    assert_eq!(a.len(), 3, "{a:?}");
    assert!(a.iter().all(|b| b[0] == 0xaf), "{a:?}");
    assert_eq!(a[0][1], 0, "the AAC sequence header first");
    assert!(audio_of(&mut hub, opus, false).is_empty());
    // A late AAC joiner gets the bridged sequence header and the cached AAC, no Opus.
    let (late, _) = hub.add_viewer(&key(), flv(true), 9, 0);
    hub.start_viewer(late);
    let l = audio_of(&mut hub, late, true);
    assert!(!l.is_empty() && l.iter().all(|b| b[0] == 0xaf), "{l:?}");
    assert_eq!(l[0][1], 0);
    // The stream's audio stops being Opus: its bridge ends and the AAC viewers get the
    // published AAC.
    send(&mut hub, aseq(100));
    send(&mut hub, audio(120));
    assert!(hub.streams.iter().all(|(_, s)| s.bridge.is_none()));
    assert_eq!(hub.totals().bridges.started, 1);
    assert_eq!(audio_of(&mut hub, aac, false).len(), 2);
}
