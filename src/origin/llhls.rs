//! LL-HLS, the reader half (docs/llhls.md "Wiring"): per live stream one `LiveWindow` and one
//! `Parked`, fed every frame as a hub reader, and `step`, the answer to a request now or the wait
//! it parks for. No sockets: the `/llhls/{app}/{stream}/...` requests, the parked connections and
//! their timers are the loop's (`server::llhls`). The window, the playlist and the blocking rules
//! are `crate::llhls`; nothing here cuts media.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime};

use crate::hub::bridge::PreferAac;
use crate::hub::reader::{Reader, ReaderState};
use crate::llhls::answer::{self, Answer};
use crate::llhls::park::{Parked, Verdict, Want};
use crate::llhls::{playlist, LiveWindow, LlhlsConfig, Lookup};
use crate::media::{Frame, StreamKey};

const LINGER: Duration = Duration::from_secs(10);
pub const PLAYLIST: &str = "index.m3u8";

/// One publish session's LL-HLS state, shared by its hub reader and the server.
pub struct Live {
    pub(crate) window: LiveWindow,
    pub(crate) parked: Parked,
    /// Unix ms at `Frame::time` 0, from the first frame (`#EXT-X-PROGRAM-DATE-TIME`).
    epoch_ms: Option<i64>,
    /// The publishing connection: only its unpublish ends this window (a takeover opens anew).
    publisher: usize,
    /// When the server first saw it ended (the linger runs from there).
    ended_at: Option<Instant>,
    /// Already in the woken list.
    woken: bool,
}

pub type Shared = Rc<RefCell<Live>>;
type WokenList = Rc<RefCell<Vec<Shared>>>;

impl Live {
    fn new(cfg: &LlhlsConfig, publisher: usize) -> Live {
        let window = LiveWindow::new(cfg.window);
        // The RFC's bound on a blocking request: three target durations.
        let timeout = Duration::from_millis(3 * u64::from(window.config().segment_target_ms));
        Live {
            window,
            parked: Parked::new(cfg.max_waiting, timeout),
            epoch_ms: None,
            publisher,
            ended_at: None,
            woken: false,
        }
    }
}

/// A parked request: what it asked, and what its answer needs.
#[derive(Clone)]
pub struct Waiting {
    pub live: Shared,
    pub file: String,
    /// The playlist's `_HLS_` directives (`None` for media).
    pub want: Option<Want>,
    pub keep_alive: bool,
    pub head_only: bool,
    /// Requests served on the connection (its `HttpHead` state once answered).
    pub served: u32,
}

/// Every stream's window, and the ones a frame woke since the loop last looked.
pub struct LlHls {
    cfg: LlhlsConfig,
    streams: HashMap<StreamKey, Shared>,
    woken: WokenList,
}

/// The hub reader of one publish session: pushes each frame into the window and, when a part
/// was added, lists the stream for `Server::llhls_wake`. Never behind: the window is bounded.
struct WindowReader {
    live: Shared,
    woken: WokenList,
    /// An Opus stream's audio as the bridge's AAC (iPhone's native player and older hls.js
    /// setups play AAC in fMP4 parts; Opus not everywhere).
    audio: PreferAac,
    passed: Vec<Frame>,
}

impl Reader for WindowReader {
    fn deliver(&mut self, frame: &Frame) -> ReaderState {
        self.audio.push(frame, &mut self.passed);
        let mut passed = std::mem::take(&mut self.passed);
        for f in passed.drain(..) {
            self.window_push(&f);
        }
        self.passed = passed;
        ReaderState::Ready
    }

    fn poll(&mut self, _now_ms: u64) -> ReaderState {
        ReaderState::Ready
    }

    fn frames_dropped(&self) -> u64 {
        0
    }
}

impl WindowReader {
    fn window_push(&mut self, frame: &Frame) {
        let mut l = self.live.borrow_mut();
        if l.epoch_ms.is_none() {
            let unix_ms = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            let time = i64::try_from(frame.time).unwrap_or(i64::MAX);
            l.epoch_ms = Some(unix_ms.saturating_sub(time));
        }
        if l.window.push(frame) && !l.woken {
            l.woken = true;
            self.woken.borrow_mut().push(self.live.clone());
        }
    }
}

impl LlHls {
    pub fn new(cfg: LlhlsConfig) -> LlHls {
        LlHls {
            cfg,
            streams: HashMap::new(),
            woken: Rc::new(RefCell::new(Vec::new())),
        }
    }

    /// A publish of `key` by `publisher` started: a fresh window and its reader. A window the
    /// key still had (a takeover, a quick republish) ends, and its waiters get its last playlist.
    pub fn open(&mut self, key: &StreamKey, publisher: usize) -> Box<dyn Reader> {
        let live = Rc::new(RefCell::new(Live::new(&self.cfg, publisher)));
        if let Some(old) = self.streams.insert(key.clone(), live.clone()) {
            self.finish(&old);
        }
        Box::new(WindowReader {
            live,
            woken: self.woken.clone(),
            audio: PreferAac::new(false),
            passed: Vec::new(),
        })
    }

    /// The publish of `key` by `publisher` ended (ignored for a publisher taken over).
    pub fn end(&mut self, key: &StreamKey, publisher: usize) {
        if let Some(live) = self.streams.get(key).cloned() {
            if live.borrow().publisher == publisher {
                self.finish(&live);
            }
        }
    }

    fn finish(&mut self, live: &Shared) {
        let mut l = live.borrow_mut();
        l.window.finish();
        if !l.woken {
            l.woken = true;
            self.woken.borrow_mut().push(live.clone());
        }
    }

    pub fn get(&self, key: &StreamKey) -> Option<Shared> {
        self.streams.get(key).cloned()
    }

    pub fn take_woken(&mut self) -> Vec<Shared> {
        let woken = std::mem::take(&mut *self.woken.borrow_mut());
        woken.iter().for_each(|l| l.borrow_mut().woken = false);
        woken
    }

    /// The earliest parked deadline, for the loop's poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.streams
            .values()
            .filter_map(|l| l.borrow().parked.next_deadline())
            .min()
    }

    /// Requests parked in every window (bounded per stream by `--llhls-max-waiting`, in total
    /// by the connection cap: each is a connection).
    pub fn waiting(&self) -> usize {
        self.streams.values().map(|l| l.borrow().parked.len()).sum()
    }

    /// The connections whose wait ran out (answer 503); ended windows past their linger go.
    pub fn expire(&mut self, now: Instant) -> Vec<usize> {
        let mut out = Vec::new();
        self.streams.retain(|_, live| {
            let mut l = live.borrow_mut();
            if l.parked.next_deadline().is_some_and(|d| d <= now) {
                let gone = l.parked.expired(now);
                out.extend(gone.iter().filter_map(|r| usize::try_from(r.id).ok()));
            }
            if l.window.ended() && l.parked.is_empty() {
                let since = *l.ended_at.get_or_insert(now);
                return now.saturating_duration_since(since) < LINGER;
            }
            true
        });
        out
    }
}

/// What a request gets now: its answer, or a wait for `Want`.
#[derive(Debug)]
pub enum Step {
    Answer(Answer),
    Park(Want),
}

/// The answer to a request on `live` now (its first try and every wake). Pure: no sockets.
pub fn step(live: &Live, w: &Waiting) -> Step {
    let (keep_alive, head_only) = (w.keep_alive, w.head_only);
    let window = &live.window;
    let not_found = || Step::Answer(answer::error(404, keep_alive));
    let Some(want) = w.want else {
        return match window.lookup(&w.file) {
            Lookup::Found(chunks) => Step::Answer(answer::media(chunks, keep_alive, head_only)),
            Lookup::Pending(_) if window.ended() => not_found(),
            Lookup::Pending(want) => Step::Park(want),
            Lookup::Missing => not_found(),
        };
    };
    let verdict = playlist::answerable(window, want);
    if verdict == Verdict::TooFar {
        return Step::Answer(answer::error(400, keep_alive));
    }
    if verdict == Verdict::Wait && !window.ended() {
        return Step::Park(want);
    }
    // Ready, or the stream ended: nothing more will come, the last playlist is the answer.
    match playlist::render(window, live.epoch_ms) {
        Some(text) => Step::Answer(answer::playlist(text, keep_alive, head_only)),
        None if window.ended() => not_found(),
        // No part yet: wait for the first one.
        None => Step::Park(window.hint_want()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llhls::window::tests as wt;

    fn cfg() -> LlhlsConfig {
        LlhlsConfig {
            window: crate::llhls::WindowConfig::default(),
            max_waiting: 2,
        }
    }

    fn key() -> StreamKey {
        StreamKey::new("live", "s").unwrap()
    }

    fn waiting(live: &Shared, file: &str, want: Option<Want>) -> Waiting {
        Waiting {
            live: live.clone(),
            file: file.into(),
            want,
            keep_alive: true,
            head_only: false,
            served: 1,
        }
    }

    fn status(s: &Step) -> u16 {
        match s {
            Step::Answer(a) => std::str::from_utf8(&a.head[9..12])
                .unwrap()
                .parse()
                .unwrap(),
            Step::Park(_) => 0,
        }
    }

    fn block(msn: u64, part: Option<u64>) -> Option<Want> {
        Some(Want::Block { msn, part })
    }

    #[test]
    fn reader_feeds_the_window_and_lists_it_once_per_turn() {
        let mut ll = LlHls::new(cfg());
        let mut reader = ll.open(&key(), 7);
        let live = ll.get(&key()).unwrap();
        // Before any part: the playlist waits for the first one, media is 404.
        let s = step(&live.borrow(), &waiting(&live, PLAYLIST, Some(Want::Now)));
        assert!(matches!(s, Step::Park(_)), "{s:?}");
        assert_eq!(
            status(&step(&live.borrow(), &waiting(&live, "init.mp4", None))),
            404
        );
        for f in wt::fixture_frames() {
            assert_eq!(reader.deliver(&f), ReaderState::Ready);
        }
        let woken = ll.take_woken();
        assert_eq!(woken.len(), 1, "listed once however many parts");
        assert!(Rc::ptr_eq(&woken[0], &live));
        assert!(ll.take_woken().is_empty());
        assert!(live.borrow().epoch_ms.is_some());
        let l = live.borrow();
        let s = step(&l, &waiting(&live, PLAYLIST, Some(Want::Now)));
        let Step::Answer(a) = s else { panic!("{s:?}") };
        let text = String::from_utf8(a.to_vec()).unwrap();
        assert!(text.contains("#EXT-X-PART:") && text.contains("#EXT-X-PRELOAD-HINT"));
        assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{text}");
        assert_eq!(status(&step(&l, &waiting(&live, "init.mp4", None))), 200);
        assert_eq!(status(&step(&l, &waiting(&live, "seg0.m4s", None))), 200);
        assert_eq!(status(&step(&l, &waiting(&live, "part0.m4s", None))), 200);
        assert_eq!(status(&step(&l, &waiting(&live, "nope.m4s", None))), 404);
        let hint = l.window.preload_hint().unwrap();
        let s = step(&l, &waiting(&live, &format!("part{hint}.m4s"), None));
        assert!(matches!(s, Step::Park(_)), "the hinted part waits: {s:?}");
        let (msn, part) = l.window.edge().last_part.unwrap();
        assert_eq!(
            status(&step(&l, &waiting(&live, PLAYLIST, block(msn, Some(part))))),
            200
        );
        let next = step(&l, &waiting(&live, PLAYLIST, block(msn, Some(part + 1))));
        assert!(matches!(next, Step::Park(_)), "{next:?}");
        let far = step(&l, &waiting(&live, PLAYLIST, block(msn + 3, None)));
        assert_eq!(status(&far), 400);
    }

    /// The init segment's sample entries an LL-HLS window of `frames` has.
    fn init_of(frames: &[Frame]) -> Vec<u8> {
        let mut ll = LlHls::new(cfg());
        let mut reader = ll.open(&key(), 7);
        for f in frames {
            assert_eq!(reader.deliver(f), ReaderState::Ready);
        }
        let live = ll.get(&key()).unwrap();
        let l = live.borrow();
        assert!(l.window.edge().last_part.is_some());
        l.window.init().unwrap().1.to_vec()
    }

    #[test]
    fn an_opus_stream_gets_the_bridges_aac_and_without_a_bridge_its_opus() {
        use crate::hub::bridge::testutil::opus_with_bridge;
        let has = |init: &[u8], fourcc: &[u8]| init.windows(4).any(|w| w == fourcc);
        let (frames, _) = opus_with_bridge(&wt::fixture_frames(), 300);
        let init = init_of(&frames);
        assert!(has(&init, b"mp4a") && has(&init, b"avc1"));
        assert!(!has(&init, b"Opus"), "no Opus sample entry");
        // The same stream with no bridge: the Opus as published, after the bounded wait.
        let published: Vec<Frame> = frames.into_iter().filter(|f| !f.bridged).collect();
        let init = init_of(&published);
        assert!(has(&init, b"Opus") && !has(&init, b"mp4a"));
    }

    #[test]
    fn end_answers_every_waiter_and_only_the_current_publisher_ends_it() {
        let mut ll = LlHls::new(cfg());
        let mut reader = ll.open(&key(), 7);
        let live = ll.get(&key()).unwrap();
        for f in wt::fixture_frames() {
            let _ = reader.deliver(&f);
        }
        let _ = ll.take_woken();
        let hint = live.borrow().window.preload_hint().unwrap();
        let now = Instant::now();
        let (msn, part) = live.borrow().window.edge().last_part.unwrap();
        let want = Want::Block {
            msn,
            part: Some(part + 1),
        };
        live.borrow_mut().parked.park(1, want, now).unwrap();
        live.borrow_mut().parked.park(2, want, now).unwrap();
        assert!(
            live.borrow_mut().parked.park(3, want, now).is_err(),
            "--llhls-max-waiting"
        );
        assert_eq!(ll.waiting(), 2);
        ll.end(&key(), 8);
        assert!(
            ll.take_woken().is_empty(),
            "another publisher's end is ignored"
        );
        ll.end(&key(), 7);
        let woken = ll.take_woken();
        assert_eq!(woken.len(), 1);
        let l = &mut *woken[0].borrow_mut();
        let ready = playlist::wake(&l.window, &mut l.parked);
        assert_eq!(ready.len(), 2, "every waiter answered at the end");
        // Ended: a blocking request is answered with the final playlist; nothing waits.
        let s = step(l, &waiting(&live, PLAYLIST, block(msn + 1, Some(0))));
        let Step::Answer(a) = s else { panic!("{s:?}") };
        assert!(String::from_utf8(a.to_vec())
            .unwrap()
            .contains("#EXT-X-ENDLIST"));
        let s = step(l, &waiting(&live, &format!("part{}.m4s", hint + 1), None));
        assert_eq!(status(&s), 404);
    }

    #[test]
    fn expiry_and_linger() {
        let mut ll = LlHls::new(cfg());
        let _reader = ll.open(&key(), 7);
        let live = ll.get(&key()).unwrap();
        let t0 = Instant::now();
        live.borrow_mut().parked.park(5, Want::Now, t0).unwrap();
        let deadline = ll.next_deadline().unwrap();
        assert_eq!(
            deadline,
            t0 + Duration::from_millis(6000),
            "3 x segment target"
        );
        assert!(ll.expire(deadline - Duration::from_millis(1)).is_empty());
        assert_eq!(ll.expire(deadline), vec![5]);
        assert_eq!(ll.next_deadline(), None);
        // A republish replaces the window and ends the old one.
        let _r2 = ll.open(&key(), 9);
        assert!(live.borrow().window.ended());
        assert!(!Rc::ptr_eq(&ll.get(&key()).unwrap(), &live));
        ll.end(&key(), 9);
        let t1 = Instant::now();
        assert!(ll.expire(t1).is_empty());
        assert!(ll.get(&key()).is_some(), "lingers");
        let _ = ll.expire(t1 + LINGER);
        assert!(ll.get(&key()).is_none(), "dropped after the linger");
    }
}
