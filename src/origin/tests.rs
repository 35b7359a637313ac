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
    aac: false,
};
const FLV: OutputForm = OutputForm::HttpFlv {
    chunked: false,
    track: 0,
    aac: false,
};

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

fn peer(last: u8) -> SocketAddr {
    SocketAddr::from(([192, 0, 2, last], 40000))
}

fn rtmp_req(action: access::Action, name: &str) -> access::Request {
    access::Request::rtmp(action, "live", None, name, peer(1))
}

#[test]
fn the_judge_is_open_by_default_and_applies_the_tokens() {
    let mut o = core();
    assert_eq!(
        o.judge(1, &rtmp_req(access::Action::Publish, "x"), 0),
        Judged::Allow
    );
    assert_eq!(
        o.judge(1, &rtmp_req(access::Action::Play, "x"), 0),
        Judged::Allow
    );
    let cfg = crate::access::AccessConfig {
        publish_token: Some(access::Secret::new("P")),
        play_token: Some(access::Secret::new("W")),
        ..Default::default()
    };
    o.set_access(
        Access::new(&cfg).unwrap(),
        Limits::new(&crate::access::LimitsConfig::default(), None),
        None,
    );
    for (action, name, want) in [
        (
            access::Action::Publish,
            "x",
            Some(access::RefuseKind::Missing),
        ),
        (
            access::Action::Publish,
            "x?token=W",
            Some(access::RefuseKind::Wrong),
        ),
        (access::Action::Publish, "x?token=P", None),
        (
            access::Action::Play,
            "x?token=P",
            Some(access::RefuseKind::Wrong),
        ),
        (access::Action::Play, "x?token=W", None),
    ] {
        let got = match o.judge(1, &rtmp_req(action, name), 0) {
            Judged::Allow => None,
            Judged::Refuse(r) => Some(r.kind),
            Judged::Pending => panic!("no hook is configured"),
        };
        assert_eq!(got, want, "{action:?} {name}");
    }
}

#[test]
fn publisher_and_player_limits_refuse_the_newcomer_and_release_on_leave() {
    let mut o = core();
    let lim = crate::access::LimitsConfig {
        max_publishers_per_ip: 1,
        max_players_per_stream: 1,
        max_streams: 2,
        ..Default::default()
    };
    o.set_access(Access::open(), Limits::new(&lim, None), None);
    let req = |conn, last, name| PublishRequest {
        conn,
        peer: Some(peer(last)),
        proto: Proto::Rtmp,
        app: "live",
        name,
    };
    let a = o.publish(&req(1, 1, "a"), 0, SystemTime::now()).unwrap();
    let err = o
        .publish(&req(2, 1, "b"), 0, SystemTime::now())
        .unwrap_err();
    assert!(
        matches!(err, Refused::Limit(h) if h.limit == crate::access::limits::Limit::PublishersPerIp)
    );
    o.publish(&req(3, 2, "b"), 0, SystemTime::now()).unwrap();
    let err = o
        .publish(&req(4, 3, "c"), 0, SystemTime::now())
        .unwrap_err();
    assert!(matches!(err, Refused::Limit(h) if h.limit == crate::access::limits::Limit::Streams));
    // A busy stream releases what it took.
    let err = o
        .publish(&req(5, 3, "b"), 0, SystemTime::now())
        .unwrap_err();
    assert_eq!(err, Refused::Busy);
    o.unpublish(a.handle, 1);
    o.publish(&req(6, 1, "a"), 0, SystemTime::now()).unwrap();
    let play = |o: &mut Origin, conn| {
        let req = PlayRequest {
            conn,
            peer: Some(peer(9)),
            proto: Proto::HttpFlv,
            app: "live",
            name: "a",
        };
        o.play(&req, FLV, 0)
    };
    play(&mut o, 10).unwrap();
    assert!(matches!(play(&mut o, 11), Err(Refused::Limit(_))));
    let m = o.limits.metrics();
    for l in [
        "max-publishers-per-ip\"} 1",
        "max-streams\"} 1",
        "max-players-per-stream\"} 1",
    ] {
        assert!(m.contains(l), "{l}: {m}");
    }
}

#[test]
fn players_waiting_for_a_stream_not_live_are_capped_and_counted() {
    let mut o = core();
    let lim = crate::access::LimitsConfig {
        max_waiting_per_stream: 2,
        ..Default::default()
    };
    o.set_access(Access::open(), Limits::new(&lim, None), None);
    let play = |o: &mut Origin, conn, name| {
        let req = PlayRequest {
            conn,
            peer: Some(peer(9)),
            proto: Proto::Rtmp,
            app: "live",
            name,
        };
        o.play(&req, FLV, 0)
    };
    assert!(!play(&mut o, 10, "soon").unwrap().live);
    assert!(!play(&mut o, 11, "soon").unwrap().live);
    let err = play(&mut o, 12, "soon").unwrap_err();
    assert!(
        matches!(err, Refused::Limit(h) if h.limit == crate::access::limits::Limit::WaitingPerStream)
    );
    // Another stream has its own count.
    play(&mut o, 13, "other").unwrap();
    assert!(o
        .limits
        .metrics()
        .contains("rtmpd_limit_refused_total{limit=\"max-waiting-per-stream\"} 1"));
    // Once the stream is live, players join beyond the waiting cap.
    let req = PublishRequest {
        conn: 1,
        peer: Some(peer(1)),
        proto: Proto::Rtmp,
        app: "live",
        name: "soon",
    };
    o.publish(&req, 0, SystemTime::now()).unwrap();
    assert!(play(&mut o, 14, "soon").unwrap().live);
}

/// A one-shot HTTP service on 127.0.0.1 answering every request with `status`.
fn hook_service(status: u16, calls: usize) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut bodies = Vec::new();
        for _ in 0..calls {
            let (mut s, _) = l.accept().unwrap();
            s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Head and the small JSON body (Content-Length) arrive at once on loopback.
            while let Ok(n) = s.read(&mut buf) {
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if n == 0 || text.contains("\r\n\r\n") && text.trim_end().ends_with('}') {
                    break;
                }
            }
            bodies.push(String::from_utf8_lossy(&got).into_owned());
            let _ = write!(s, "HTTP/1.1 {status} X\r\nContent-Length: 0\r\n\r\n");
        }
        bodies
    });
    (addr, t)
}

#[test]
fn a_hook_keeps_the_request_pending_until_it_answers() {
    for (status, allowed) in [(200, true), (403, false)] {
        let (addr, service) = hook_service(status, 2);
        let mut o = core();
        let cfg = crate::access::AccessConfig {
            on_play: Some(access::hook::HookUrl::parse(&format!("http://{addr}/play")).unwrap()),
            ..Default::default()
        };
        let woke = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = woke.clone();
        let wake: access::hook::Wake = std::sync::Arc::new(move || {
            w.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        });
        let pool = HookPool::new(1, 8, std::time::Duration::from_secs(3), wake).unwrap();
        o.set_access(
            Access::new(&cfg).unwrap(),
            Limits::new(&crate::access::LimitsConfig::default(), None),
            Some(pool),
        );
        // Two asks; the client of the first leaves, so only the second gets a verdict.
        assert_eq!(
            o.judge(7, &rtmp_req(access::Action::Play, "x?token=abc"), 0),
            Judged::Pending
        );
        o.forget(7);
        assert_eq!(
            o.judge(8, &rtmp_req(access::Action::Play, "x"), 0),
            Judged::Pending
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut got = Vec::new();
        while got.is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
            got = o.hook_answers();
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].0, 8);
        assert_eq!(
            matches!(got[0].1, Judged::Allow),
            allowed,
            "{status}: {got:?}"
        );
        assert!(woke.load(std::sync::atomic::Ordering::SeqCst) >= 1);
        let bodies = service.join().unwrap();
        assert!(
            bodies[0].contains("\"stream\":\"x\"") && bodies[0].contains("\"action\":\"play\""),
            "{}",
            bodies[0]
        );
    }
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
