//! RTMP from the tests with the crate's own client (`rtmpd::rtmp::client::RtmpClient`), so the
//! core tests run without FFmpeg: a player that collects frames and statuses, and a publisher
//! that sends a fixture paced by its timestamps.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rtmpd::media::{Frame, Track};
use rtmpd::rtmp::client::{ClientEvent, RtmpClient};

use super::{fixture_bytes, is_end_of_sequence};

/// Timeout for connect / publish / play answers.
pub const RTMP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Default)]
pub struct RtmpPlay {
    pub frames: Vec<Frame>,
    /// onStatus codes in order, including the ones before Play.Start.
    pub statuses: Vec<String>,
    /// `_error` replies and client-side errors.
    pub errors: Vec<String>,
    /// The server closed the connection (after the publisher left).
    pub closed: bool,
    /// The play itself failed (the status code or error text).
    pub refused: Option<String>,
}

impl RtmpPlay {
    pub fn saw(&self, code: &str) -> bool {
        self.statuses.iter().any(|c| c == code)
    }
}

/// Connects, plays `app/name`, and collects everything for at most `max_duration`; stops early
/// when the server closes the connection (or 2 s after Play.UnpublishNotify if it does not).
pub fn rtmp_play_collect(
    addr: SocketAddr,
    app: &str,
    name: &str,
    max_duration: Duration,
) -> RtmpPlay {
    let deadline = Instant::now() + max_duration;
    let mut out = RtmpPlay::default();
    let mut client = match RtmpClient::connect(addr, app, RTMP_TIMEOUT) {
        Ok(c) => c,
        Err(e) => {
            out.refused = Some(format!("connect: {e}"));
            return out;
        }
    };
    if let Err(e) = client.play(name) {
        out.refused = Some(e.to_string());
        return out;
    }
    // `play` consumed Play.Start while waiting for it; record it (earlier statuses such as
    // Play.Reset stay queued and follow).
    out.statuses.push("NetStream.Play.Start".into());
    collect_events(&mut client, &mut out, deadline);
    client.close();
    out
}

/// Collects events from a client that is already playing, until `deadline` or the end.
pub fn collect_events(client: &mut RtmpClient, out: &mut RtmpPlay, deadline: Instant) {
    let mut unpublished_at: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        if let Some(t) = unpublished_at {
            // After UnpublishNotify the server closes; do not wait for ever if it does not.
            if now >= t + Duration::from_secs(2) {
                return;
            }
        }
        match client.next_event((deadline - now).min(Duration::from_millis(200))) {
            Ok(Some(ClientEvent::Media { frame, .. })) => out.frames.push(frame),
            Ok(Some(ClientEvent::Status { code, .. })) => {
                if code == "NetStream.Play.UnpublishNotify" {
                    unpublished_at = Some(Instant::now());
                }
                out.statuses.push(code);
            }
            Ok(Some(ClientEvent::Error(e))) => out.errors.push(e),
            Ok(Some(_)) | Ok(None) => {}
            Err(e) => {
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::BrokenPipe
                ) {
                    out.closed = true;
                } else {
                    out.errors.push(e.to_string());
                }
                return;
            }
        }
    }
}

/// `rtmp_play_collect` in a thread.
pub fn spawn_rtmp_play(
    addr: SocketAddr,
    app: &str,
    name: &str,
    max_duration: Duration,
) -> JoinHandle<RtmpPlay> {
    let (app, name) = (app.to_string(), name.to_string());
    std::thread::spawn(move || rtmp_play_collect(addr, &app, &name, max_duration))
}

/// How a publisher ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishEnd {
    /// deleteStream, then close (a polite encoder).
    Delete,
    /// Close the socket without a word (a crash or a lost network, as far as the server sees).
    Drop,
    /// Stay connected without sending anything until stopped (a dead encoder).
    Stall,
}

#[derive(Clone, Debug)]
pub struct PublishOpts {
    /// Media time per wall time: 1.0 is real time; 0 sends as fast as possible.
    pub speed: f64,
    /// Send the fixture this many times, timestamps continuing across loops.
    pub loops: u32,
    /// Stop after this much media time of the first loop (None: all of it).
    pub limit_ms: Option<u32>,
    pub end: PublishEnd,
    /// Added to every timestamp (e.g. to cross 0xFFFFFF and exercise extended timestamps).
    pub ts_offset: u32,
    /// Wait this long after the publish is accepted before the first frame, so that HTTP and
    /// WS viewers (404 until the publish) can join before any media and get all of it.
    pub start_delay: Duration,
}

impl Default for PublishOpts {
    fn default() -> Self {
        PublishOpts {
            speed: 1.0,
            loops: 1,
            limit_ms: None,
            end: PublishEnd::Delete,
            ts_offset: 0,
            start_delay: Duration::ZERO,
        }
    }
}

/// A fixture publisher in its own thread; stopped (per its `end`) on drop.
pub struct RustPublisher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<usize>>>,
}

impl RustPublisher {
    /// Connects and publishes (the answer is awaited here, so an error comes back at once),
    /// then sends the fixture from a thread.
    pub fn start(
        addr: SocketAddr,
        app: &str,
        name: &str,
        fixture: &str,
        opts: PublishOpts,
    ) -> io::Result<RustPublisher> {
        let mut client = RtmpClient::connect(addr, app, RTMP_TIMEOUT)?;
        let stream_id = client.publish(name)?;
        let (_, _, frames) = rtmpd::mux::flv_demux::read_all(&fixture_bytes(fixture))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            send_frames(&mut client, stream_id, &frames, &opts, &stop2)
                .and_then(|n| finish(client, &opts, &stop2).map(|_| n))
        });
        Ok(RustPublisher {
            stop,
            thread: Some(thread),
        })
    }

    /// Waits for the sending to finish; the number of frames sent.
    pub fn join(mut self) -> io::Result<usize> {
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("publisher thread")
    }

    /// Asks the thread to stop now and waits for it.
    pub fn stop(mut self) -> io::Result<usize> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .unwrap()
            .join()
            .expect("publisher thread")
    }

    pub fn is_finished(&self) -> bool {
        self.thread
            .as_ref()
            .map(|t| t.is_finished())
            .unwrap_or(true)
    }
}

impl Drop for RustPublisher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn send_frames(
    client: &mut RtmpClient,
    stream_id: u32,
    frames: &[Frame],
    opts: &PublishOpts,
    stop: &AtomicBool,
) -> io::Result<usize> {
    let delay_end = Instant::now() + opts.start_delay;
    while Instant::now() < delay_end {
        if stop.load(Ordering::Relaxed) {
            return Ok(0);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let start = Instant::now();
    let first = frames.first().map(|f| f.dts).unwrap_or(0);
    let span = frames.iter().map(|f| f.dts).max().unwrap_or(0) - first + 40;
    let mut sent = 0;
    for l in 0..opts.loops {
        let shift = l * span;
        for f in frames {
            if stop.load(Ordering::Relaxed) {
                return Ok(sent);
            }
            // Later loops repeat the media only; the FLV end-of-sequence belongs at the end.
            if l > 0 && (f.config || f.track == Track::Meta) || is_end_of_sequence(f) {
                continue;
            }
            let rel = f.dts - first;
            if let Some(limit) = opts.limit_ms {
                if rel > limit {
                    return Ok(sent);
                }
            }
            let media_ms = (rel + shift) as f64;
            if opts.speed > 0.0 {
                let due = start + Duration::from_secs_f64(media_ms / 1000.0 / opts.speed);
                // Sleep in short steps so that a stop request is seen promptly.
                while Instant::now() < due {
                    if stop.load(Ordering::Relaxed) {
                        return Ok(sent);
                    }
                    std::thread::sleep((due - Instant::now()).min(Duration::from_millis(50)));
                }
            }
            let mut f = f.clone();
            f.dts = f.dts.wrapping_add(shift).wrapping_add(opts.ts_offset);
            client.send_frame(stream_id, &f)?;
            sent += 1;
        }
    }
    Ok(sent)
}

fn finish(client: RtmpClient, opts: &PublishOpts, stop: &AtomicBool) -> io::Result<()> {
    match opts.end {
        PublishEnd::Delete => client.close(),
        PublishEnd::Drop => drop(client),
        PublishEnd::Stall => {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
            }
            drop(client);
        }
    }
    Ok(())
}

/// The RTMP handshake by hand (plain, C1 with zero version), for tests that then send
/// hand-made chunks. Returns the connected socket after C2.
pub fn raw_rtmp_handshake(addr: SocketAddr) -> io::Result<std::net::TcpStream> {
    use std::io::{Read, Write};
    let mut s = super::raw_connect(addr);
    s.set_read_timeout(Some(RTMP_TIMEOUT))?;
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0; 8]);
    c0c1.extend((0..1528u32).map(|i| (i * 7 + 3) as u8));
    s.write_all(&c0c1)?;
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s0s1s2)?;
    // C2 echoes S1.
    s.write_all(&s0s1s2[1..1537])?;
    Ok(s)
}

/// One type-0 chunk on chunk stream 2 carrying a whole protocol control message.
pub fn control_chunk(type_id: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut v = vec![
        0x02,
        0,
        0,
        0,
        (len >> 16) as u8,
        (len >> 8) as u8,
        len as u8,
        type_id,
        0,
        0,
        0,
        0,
    ];
    v.extend_from_slice(payload);
    v
}
