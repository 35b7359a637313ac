//! Table tests of the origin core: requests and frames in, decisions and actions out, no sockets.

use super::*;
use crate::hub::{Reader, ReaderState};
use crate::media::frame::{TAG_AUDIO, TAG_VIDEO};
use bytes::Bytes;
use std::cell::Cell;
use std::rc::Rc;

const RTMP: OutputForm = OutputForm::Rtmp {
    chunk_size: 4096,
    stream_id: 1,
};
const FLV: OutputForm = OutputForm::HttpFlv { chunked: false };

fn core() -> Origin {
    Origin::new(
        HubConfig {
            queue_soft_bytes: 4000,
            queue_hard_bytes: 20_000,
            ..HubConfig::default()
        },
        None,
    )
}

fn publish(o: &mut Origin, conn: usize, name: &str, now: u64) -> Result<Published, Refused> {
    let req = PublishRequest {
        conn,
        peer: None,
        proto: Proto::Rtmp,
        app: "live",
        name,
    };
    o.publish(&req, now, SystemTime::now())
}

fn play(o: &mut Origin, conn: usize, name: &str, form: OutputForm) -> Result<Playing, Refused> {
    let req = PlayRequest {
        conn,
        peer: None,
        proto: Proto::HttpFlv,
        app: "live",
        name,
    };
    let p = o.play(&req, form, 0)?;
    o.start_viewer(p.viewer);
    Ok(p)
}

fn vkey(t: u32, size: usize) -> Frame {
    let mut d = vec![0x17, 1, 0, 0, 0];
    d.resize(size, 0xaa);
    Frame::parse(TAG_VIDEO, t, Bytes::from(d)).unwrap()
}
fn vinter(t: u32, size: usize) -> Frame {
    let mut d = vec![0x27, 1, 0, 0, 0];
    d.resize(size, 0xbb);
    Frame::parse(TAG_VIDEO, t, Bytes::from(d)).unwrap()
}
fn vseq() -> Frame {
    Frame::parse(
        TAG_VIDEO,
        0,
        Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x64]),
    )
    .unwrap()
}
fn aseq() -> Frame {
    Frame::parse(TAG_AUDIO, 0, Bytes::from_static(&[0xaf, 0, 0x12, 0x10])).unwrap()
}

fn actions(o: &mut Origin) -> Vec<Action> {
    std::iter::from_fn(|| o.poll_action()).collect()
}

/// A reader that is behind while `behind` is set and gives up when `gone` is set.
struct FakeReader {
    got: Rc<Cell<usize>>,
    behind: Rc<Cell<bool>>,
    gone: Rc<Cell<bool>>,
}

impl Reader for FakeReader {
    fn deliver(&mut self, _: &Frame) -> ReaderState {
        self.got.set(self.got.get() + 1);
        self.poll(0)
    }
    fn poll(&mut self, _: u64) -> ReaderState {
        if self.gone.get() {
            ReaderState::Gone
        } else if self.behind.get() {
            ReaderState::Behind
        } else {
            ReaderState::Ready
        }
    }
    fn frames_dropped(&self) -> u64 {
        0
    }
}

#[test]
fn publish_play_unpublish() {
    let mut o = core();
    let p = publish(&mut o, 1, "cam", 0).unwrap();
    assert_eq!(p.key.to_string(), "live/cam");
    assert_eq!(p.took_over_from, None);
    let v = play(&mut o, 2, "cam", RTMP).unwrap();
    assert!(v.live);
    o.frame(p.handle, 1, vseq(), 0);
    // The viewer's queue went from empty to non-empty: one flush of connection 2.
    assert_eq!(actions(&mut o), vec![Action::Flush(2)]);
    o.frame(p.handle, 1, vkey(0, 100), 0);
    assert_eq!(actions(&mut o), vec![]);
    o.unpublish(p.handle, 1);
    assert_eq!(actions(&mut o), vec![Action::EndViewer(v.viewer)]);
    assert!(!o.hub.is_live(&p.key));
    // A stale handle finds nothing: frames after the end are ignored.
    o.frame(p.handle, 1, vkey(40, 100), 40);
    assert_eq!(actions(&mut o), vec![]);
}

#[test]
fn bad_names_are_refused_for_publish_and_play() {
    let mut o = core();
    for name in ["", "a b", "../x", &"x".repeat(65)] {
        assert!(matches!(
            publish(&mut o, 1, name, 0),
            Err(Refused::BadName(_))
        ));
        assert!(matches!(
            play(&mut o, 2, name, FLV),
            Err(Refused::BadName(_))
        ));
    }
    assert_eq!(o.hub.totals().streams, 0);
}

#[test]
fn the_judge_allows_everything_today() {
    let o = core();
    let req = PublishRequest {
        conn: 1,
        peer: None,
        proto: Proto::Rtmp,
        app: "live",
        name: "x",
    };
    assert_eq!(o.judge_publish(&req), Decision::Allow);
    let req = PlayRequest {
        conn: 1,
        peer: None,
        proto: Proto::WsFlv,
        app: "live",
        name: "x",
    };
    assert_eq!(o.judge_play(&req), Decision::Allow);
}

#[test]
fn second_publisher_refused_idle_one_taken_over() {
    let mut o = core();
    let first = publish(&mut o, 1, "cam", 0).unwrap();
    o.frame(first.handle, 1, vkey(0, 50), 1000);
    assert_eq!(publish(&mut o, 2, "cam", 1000), Err(Refused::Busy));
    assert_eq!(publish(&mut o, 2, "cam", 5999), Err(Refused::Busy));
    let second = publish(&mut o, 2, "cam", 6000).unwrap();
    assert_eq!(second.took_over_from, Some(1));
    // The old publisher's frames and end no longer count.
    o.frame(first.handle, 1, vkey(40, 50), 6001);
    o.unpublish(first.handle, 1);
    assert_eq!(actions(&mut o), vec![]);
    assert!(o.hub.is_live(&second.key));
    // Other keys are independent.
    assert!(publish(&mut o, 3, "other", 6000).is_ok());
}

#[test]
fn waiting_players_start_when_the_publisher_arrives() {
    let mut o = core();
    let a = play(&mut o, 10, "cam", RTMP).unwrap();
    let b = play(&mut o, 11, "cam", FLV).unwrap();
    assert!(!a.live && !b.live);
    let p = publish(&mut o, 1, "cam", 0).unwrap();
    let mut waiting = p.waiting_viewers.clone();
    waiting.sort();
    assert_eq!(waiting, vec![a.viewer, b.viewer]);
    o.frame(p.handle, 1, vseq(), 0);
    o.frame(p.handle, 1, aseq(), 0);
    o.frame(p.handle, 1, vkey(0, 100), 0);
    let got = actions(&mut o);
    assert!(got.contains(&Action::Flush(10)), "{got:?}");
    assert!(got.contains(&Action::Flush(11)), "{got:?}");
}

#[test]
fn slow_viewer_skips_then_is_dropped_and_others_keep_up() {
    let mut o = Origin::new(
        HubConfig {
            queue_soft_ms: 1000,
            queue_hard_ms: 3000,
            ..HubConfig::default()
        },
        None,
    );
    let p = publish(&mut o, 1, "cam", 0).unwrap();
    o.frame(p.handle, 1, vseq(), 0);
    let slow = play(&mut o, 2, "cam", FLV).unwrap();
    let fast = play(&mut o, 3, "cam", FLV).unwrap();
    let mut dropped = Vec::new();
    let mut flushed_fast = 0;
    // A keyframe every 400 ms, a frame every 40 ms; the slow viewer writes a few bytes of
    // its first frame and then never reads again.
    for i in 0..150u32 {
        let t = i * 40;
        let f = if t % 400 == 0 {
            vkey(t, 1000)
        } else {
            vinter(t, 1000)
        };
        o.frame(p.handle, 1, f, u64::from(t));
        if i == 0 {
            o.hub
                .viewer(slow.viewer)
                .unwrap()
                .queue
                .advance(13 + 22 + 5);
        }
        for a in actions(&mut o) {
            match a {
                Action::DropSlow(t) => dropped.push(t),
                Action::Flush(3) => flushed_fast += 1,
                Action::Flush(_) => {}
                other => panic!("{other:?}"),
            }
        }
        // The fast viewer drains everything it gets.
        let q = &mut o.hub.viewer(fast.viewer).unwrap().queue;
        let mut sink = Vec::new();
        while q.write_to(&mut sink).unwrap() > 0 {}
    }
    assert_eq!(dropped, vec![2], "only the slow viewer is dropped, once");
    assert_eq!(
        flushed_fast, 150,
        "the fast viewer is flushed for every frame"
    );
    let slow_stats = o.hub.viewer_ref(slow.viewer).unwrap().stats();
    assert!(slow_stats.skips >= 1, "it skipped before it was dropped");
    assert_eq!(o.hub.viewer_ref(fast.viewer).unwrap().stats().skips, 0);
    assert_eq!(o.hub.totals().slow_disconnects, 1);
}

#[test]
fn a_recorder_behind_holds_the_publisher_until_it_drains() {
    let mut o = core();
    let p = publish(&mut o, 1, "cam", 0).unwrap();
    let (got, behind, gone) = (
        Rc::new(Cell::new(0)),
        Rc::new(Cell::new(false)),
        Rc::new(Cell::new(false)),
    );
    o.hub.add_reader(
        p.handle,
        Box::new(FakeReader {
            got: got.clone(),
            behind: behind.clone(),
            gone: gone.clone(),
        }),
    );
    o.frame(p.handle, 1, vkey(0, 10), 0);
    assert_eq!(actions(&mut o), vec![]);
    behind.set(true);
    o.frame(p.handle, 1, vinter(40, 10), 40);
    o.frame(p.handle, 1, vinter(80, 10), 80);
    // Held once, however many frames arrive meanwhile (they still reach the reader).
    assert_eq!(actions(&mut o), vec![Action::HoldInput(1)]);
    assert!(o.is_held(1) && o.has_held());
    assert_eq!(got.get(), 3);
    o.poll_held(100);
    assert_eq!(actions(&mut o), vec![]);
    behind.set(false);
    o.poll_held(200);
    assert_eq!(actions(&mut o), vec![Action::ResumeInput(1)]);
    assert!(!o.is_held(1));
    // A reader that gives up releases the publisher too, and is gone for good.
    behind.set(true);
    o.frame(p.handle, 1, vinter(120, 10), 120);
    assert_eq!(actions(&mut o), vec![Action::HoldInput(1)]);
    gone.set(true);
    o.poll_held(10_000);
    assert_eq!(actions(&mut o), vec![Action::ResumeInput(1)]);
    o.frame(p.handle, 1, vinter(160, 10), 160);
    assert_eq!(got.get(), 4, "the dropped reader gets nothing more");
    assert_eq!(actions(&mut o), vec![]);
}

#[test]
fn unpublish_releases_a_held_publisher() {
    let mut o = core();
    let p = publish(&mut o, 1, "cam", 0).unwrap();
    let flag = Rc::new(Cell::new(true));
    o.hub.add_reader(
        p.handle,
        Box::new(FakeReader {
            got: Rc::new(Cell::new(0)),
            behind: flag.clone(),
            gone: Rc::new(Cell::new(false)),
        }),
    );
    o.frame(p.handle, 1, vkey(0, 10), 0);
    assert_eq!(actions(&mut o), vec![Action::HoldInput(1)]);
    o.unpublish(p.handle, 1);
    assert!(!o.has_held());
}

#[test]
fn shutdown_ends_every_publish_and_every_waiting_player() {
    let mut o = core();
    let p = publish(&mut o, 1, "cam", 0).unwrap();
    let live = play(&mut o, 2, "cam", RTMP).unwrap();
    let waiting = play(&mut o, 3, "nobody", FLV).unwrap();
    publish(&mut o, 4, "other", 0).unwrap();
    let mut publishers = o.shut_down();
    publishers.sort();
    assert_eq!(publishers, vec![1, 4]);
    let mut ended: Vec<ViewerId> = actions(&mut o)
        .into_iter()
        .map(|a| match a {
            Action::EndViewer(v) => v,
            other => panic!("{other:?}"),
        })
        .collect();
    ended.sort();
    let mut want = vec![live.viewer, waiting.viewer];
    want.sort();
    assert_eq!(ended, want, "each viewer ends exactly once");
    assert!(!o.hub.is_live(&p.key));
    o.finish_recordings();
}
