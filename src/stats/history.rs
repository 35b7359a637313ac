//! The dashboard's graphs: `Ring`, a fixed-capacity ring buffer, and the per-stream
//! (`StreamHistory`: bitrate in and out, viewers per protocol) and server-wide (`ServerHistory`:
//! CPU, resident memory, connections) histories of the last 10 minutes built on it. The caller
//! passes cumulative counters as often as it likes; a sample is taken once per interval, rates
//! come from the difference to the previous one. Memory is fixed at construction.

use serde::Serialize;

use crate::codec::json::{self, round};
use crate::media::StreamKey;

/// How far back the graphs go.
pub const HISTORY_MS: u64 = 10 * 60 * 1000;
/// One sample per this many milliseconds: 120 samples for 10 minutes.
pub const DEFAULT_INTERVAL_MS: u64 = 5_000;
/// The shortest interval accepted: 600 samples, a few KiB per stream.
const MIN_INTERVAL_MS: u64 = 1_000;

/// The last `capacity` values pushed, oldest first; pushing into a full ring drops the oldest.
#[derive(Clone, Debug)]
pub struct Ring<T> {
    buf: Vec<T>,
    /// Where the next value goes once the ring is full.
    next: usize,
    capacity: usize,
}

impl<T: Clone> Ring<T> {
    /// A ring of at least one slot; the memory is reserved here, once.
    pub fn new(capacity: usize) -> Ring<T> {
        let capacity = capacity.max(1);
        Ring {
            buf: Vec::with_capacity(capacity),
            next: 0,
            capacity,
        }
    }

    pub fn push(&mut self, v: T) {
        if self.buf.len() < self.capacity {
            self.buf.push(v);
        } else {
            self.buf[self.next] = v;
            self.next = (self.next + 1) % self.capacity;
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        let (newer, older) = self.buf.split_at(self.next);
        older.iter().chain(newer.iter())
    }
}

/// Viewers of a stream by protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Viewers {
    pub rtmp: u32,
    pub http_flv: u32,
    pub ws_flv: u32,
    /// WHEP sessions.
    pub webrtc: u32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct StreamSample {
    at_ms: u64,
    kbps_in: f64,
    kbps_out: f64,
    viewers: Viewers,
}

#[derive(Clone, Copy, Debug, PartialEq)]
struct ServerSample {
    at_ms: u64,
    cpu_percent: f64,
    rss_bytes: Option<u64>,
    connections: u32,
}

/// The sampling clock both histories share: when the next sample is due, and the counters at the
/// last one (rates are differences, so the first call only sets the baseline).
#[derive(Clone, Copy, Debug)]
struct Clock<C> {
    interval_ms: u64,
    last: Option<(u64, C)>,
}

impl<C: Copy> Clock<C> {
    fn new(interval_ms: u64) -> Clock<C> {
        Clock {
            interval_ms: interval_ms.clamp(MIN_INTERVAL_MS, HISTORY_MS),
            last: None,
        }
    }

    fn capacity(&self) -> usize {
        (HISTORY_MS / self.interval_ms) as usize
    }

    /// The previous counters and the milliseconds since them, when a sample is due.
    fn due(&mut self, now_ms: u64, counters: C) -> Option<(u64, C)> {
        match self.last {
            None => {
                self.last = Some((now_ms, counters));
                None
            }
            Some((at, prev)) => {
                let span = now_ms.checked_sub(at)?;
                if span < self.interval_ms {
                    return None;
                }
                self.last = Some((now_ms, counters));
                Some((span, prev))
            }
        }
    }
}

/// kbit/s from a byte count over `span_ms`; a counter that went backwards (a restart) reads 0.
fn kbps(now: u64, prev: u64, span_ms: u64) -> f64 {
    now.saturating_sub(prev) as f64 * 8.0 / span_ms.max(1) as f64
}

/// `ago_s`: whole seconds before `now_ms`, for samples taken at `at`.
fn ago(now_ms: u64, at: impl Iterator<Item = u64>) -> Vec<u64> {
    at.map(|t| now_ms.saturating_sub(t).saturating_add(500) / 1000)
        .collect()
}

/// The columns of one entry of `streams` in `/api/streams/history`, oldest first.
#[derive(Serialize)]
pub struct StreamColumns {
    ago_s: Vec<u64>,
    /// One decimal.
    bitrate_in_kbps: Vec<f64>,
    bitrate_out_kbps: Vec<f64>,
    viewers: ViewerColumns,
}

#[derive(Serialize)]
struct ViewerColumns {
    rtmp: Vec<u32>,
    http_flv: Vec<u32>,
    ws_flv: Vec<u32>,
    webrtc: Vec<u32>,
}

/// The `server` object of `/api/streams/history`, oldest first.
#[derive(Serialize)]
pub struct ServerColumns {
    ago_s: Vec<u64>,
    /// One decimal.
    cpu_percent: Vec<f64>,
    rss_bytes: Vec<Option<u64>>,
    connections: Vec<u32>,
}

/// One stream's last 10 minutes: bitrate in and out, viewers per protocol.
#[derive(Clone, Debug)]
pub struct StreamHistory {
    clock: Clock<(u64, u64)>,
    samples: Ring<StreamSample>,
}

impl StreamHistory {
    /// `interval_ms` is clamped to 1 s ..= 10 min.
    pub fn new(interval_ms: u64) -> StreamHistory {
        let clock = Clock::new(interval_ms);
        StreamHistory {
            samples: Ring::new(clock.capacity()),
            clock,
        }
    }

    pub fn interval_ms(&self) -> u64 {
        self.clock.interval_ms
    }

    /// Cumulative bytes in and out and the viewers now; takes a sample (and returns true) when
    /// an interval has passed since the last one.
    pub fn sample(&mut self, now_ms: u64, bytes_in: u64, bytes_out: u64, viewers: Viewers) -> bool {
        let Some((span, (prev_in, prev_out))) = self.clock.due(now_ms, (bytes_in, bytes_out))
        else {
            return false;
        };
        self.samples.push(StreamSample {
            at_ms: now_ms,
            kbps_in: kbps(bytes_in, prev_in, span),
            kbps_out: kbps(bytes_out, prev_out, span),
            viewers,
        });
        true
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// `ago_s`, `bitrate_in_kbps`, `bitrate_out_kbps`, `viewers`: one entry of `streams` in
    /// `/api/streams/history` but for `app` and `stream`, which the caller adds.
    pub fn columns(&self, now_ms: u64) -> StreamColumns {
        let s = || self.samples.iter();
        StreamColumns {
            ago_s: ago(now_ms, s().map(|x| x.at_ms)),
            bitrate_in_kbps: s().map(|x| round(x.kbps_in, 1)).collect(),
            bitrate_out_kbps: s().map(|x| round(x.kbps_out, 1)).collect(),
            viewers: ViewerColumns {
                rtmp: s().map(|x| x.viewers.rtmp).collect(),
                http_flv: s().map(|x| x.viewers.http_flv).collect(),
                ws_flv: s().map(|x| x.viewers.ws_flv).collect(),
                webrtc: s().map(|x| x.viewers.webrtc).collect(),
            },
        }
    }
}

/// The server's last 10 minutes: CPU share, resident memory, open connections.
#[derive(Clone, Debug)]
pub struct ServerHistory {
    clock: Clock<f64>,
    samples: Ring<ServerSample>,
}

impl ServerHistory {
    pub fn new(interval_ms: u64) -> ServerHistory {
        let clock = Clock::new(interval_ms);
        ServerHistory {
            samples: Ring::new(clock.capacity()),
            clock,
        }
    }

    /// Cumulative CPU seconds of the process, its resident memory when known, connections now.
    pub fn sample(
        &mut self,
        now_ms: u64,
        cpu_seconds: f64,
        rss_bytes: Option<u64>,
        connections: u32,
    ) -> bool {
        let cpu = if cpu_seconds.is_finite() {
            cpu_seconds.max(0.0)
        } else {
            0.0
        };
        let Some((span, prev)) = self.clock.due(now_ms, cpu) else {
            return false;
        };
        // Of one core, like top: 150 means one and a half cores busy.
        let cpu_percent = (cpu - prev).max(0.0) * 1000.0 / span.max(1) as f64 * 100.0;
        self.samples.push(ServerSample {
            at_ms: now_ms,
            cpu_percent,
            rss_bytes,
            connections,
        });
        true
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The `server` object of `/api/streams/history`.
    pub fn columns(&self, now_ms: u64) -> ServerColumns {
        let s = || self.samples.iter();
        ServerColumns {
            ago_s: ago(now_ms, s().map(|x| x.at_ms)),
            cpu_percent: s().map(|x| round(x.cpu_percent, 1)).collect(),
            rss_bytes: s().map(|x| x.rss_bytes).collect(),
            connections: s().map(|x| x.connections).collect(),
        }
    }
}

#[derive(Serialize)]
struct History<'a> {
    /// One decimal.
    interval_s: f64,
    server: ServerColumns,
    streams: Vec<StreamEntry<'a>>,
}

#[derive(Serialize)]
struct StreamEntry<'a> {
    app: &'a str,
    stream: &'a str,
    #[serde(flatten)]
    columns: StreamColumns,
}

/// The whole `/api/streams/history` answer (schema in the module doc of `stats`).
pub fn history_json<'a>(
    now_ms: u64,
    server: &ServerHistory,
    streams: impl IntoIterator<Item = (&'a StreamKey, &'a StreamHistory)>,
) -> String {
    json::to_string(&History {
        interval_s: round(server.clock.interval_ms as f64 / 1000.0, 1),
        server: server.columns(now_ms),
        streams: streams
            .into_iter()
            .map(|(key, h)| StreamEntry {
                app: &key.app,
                stream: &key.stream,
                columns: h.columns(now_ms),
            })
            .collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_wraps_oldest_first() {
        let mut r = Ring::new(3);
        assert!(r.is_empty());
        for v in 1..=2 {
            r.push(v);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [1, 2]);
        for v in 3..=7 {
            r.push(v);
        }
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [5, 6, 7]);
        assert_eq!((r.len(), r.capacity()), (3, 3));
        assert_eq!(Ring::<u8>::new(0).capacity(), 1);
    }

    #[test]
    fn stream_history_keeps_ten_minutes_in_fixed_memory() {
        let mut h = StreamHistory::new(DEFAULT_INTERVAL_MS);
        let v = Viewers {
            rtmp: 1,
            http_flv: 2,
            ws_flv: 3,
            webrtc: 4,
        };
        // 2500 kbit/s in: 312_500 bytes a second; out twice that. Polled every second for 20 min.
        let mut taken = 0;
        for s in 0..=1200u64 {
            if h.sample(s * 1000, s * 312_500, s * 625_000, v) {
                taken += 1;
            }
        }
        assert_eq!(taken, 240);
        assert_eq!(h.len(), 120);
        assert_eq!(h.samples.capacity(), 120);
        assert!(h.samples.buf.capacity() <= 120);
        let first = h.samples.iter().next().unwrap();
        assert_eq!(first.at_ms, 605_000);
        assert_eq!((first.kbps_in, first.kbps_out), (2500.0, 5000.0));
        let j = json::to_string(&h.columns(1_200_000));
        assert!(j.starts_with("{\"ago_s\":[595,590,"), "{j}");
        assert!(j.contains(",5,0],\"bitrate_in_kbps\":[2500.0,"), "{j}");
        assert!(j.contains("\"viewers\":{\"rtmp\":[1,"), "{j}");
        let webrtc = vec!["4"; 120].join(",");
        assert!(
            j.ends_with(&format!(",3],\"webrtc\":[{webrtc}]}}}}")),
            "{j}"
        );
    }

    #[test]
    fn counters_that_go_backwards_or_clocks_that_do_read_zero() {
        let mut h = StreamHistory::new(1);
        assert_eq!(h.interval_ms(), MIN_INTERVAL_MS);
        h.sample(10_000, 1_000_000, 0, Viewers::default());
        assert!(
            !h.sample(5_000, 0, 0, Viewers::default()),
            "a clock going back takes no sample"
        );
        assert!(h.sample(11_000, 10, u64::MAX, Viewers::default()));
        let s = h.samples.iter().next().unwrap();
        assert_eq!(s.kbps_in, 0.0);
        assert!(s.kbps_out.is_finite());
    }

    #[test]
    fn server_history_and_the_whole_document() {
        let mut srv = ServerHistory::new(5_000);
        assert!(!srv.sample(0, 1.0, Some(10 << 20), 4));
        assert!(!srv.sample(4_999, 1.2, None, 4));
        // 0.5 CPU seconds over 5 s: 10% of a core.
        assert!(srv.sample(5_000, 1.5, Some(11 << 20), 5));
        assert!(srv.sample(10_000, f64::NAN, None, 6));
        let mut cam = StreamHistory::new(5_000);
        cam.sample(0, 0, 0, Viewers::default());
        cam.sample(
            5_000,
            625_000,
            0,
            Viewers {
                rtmp: 0,
                http_flv: 1,
                ws_flv: 0,
                webrtc: 2,
            },
        );
        let key = StreamKey {
            app: "live".into(),
            stream: "cam".into(),
        };
        let j = history_json(10_000, &srv, [(&key, &cam)]);
        assert_eq!(
            j,
            "{\"interval_s\":5.0,\"server\":{\"ago_s\":[5,0],\"cpu_percent\":[10.0,0.0],\"rss_bytes\":[11534336,null],\
             \"connections\":[5,6]},\"streams\":[{\"app\":\"live\",\"stream\":\"cam\",\"ago_s\":[5],\
             \"bitrate_in_kbps\":[1000.0],\"bitrate_out_kbps\":[0.0],\"viewers\":{\"rtmp\":[0],\"http_flv\":[1],\"ws_flv\":[0],\"webrtc\":[2]}}]}"
        );
    }
}
