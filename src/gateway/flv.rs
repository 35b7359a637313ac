//! The FLV gateway's upstream client, sans-IO: the upstream URL, the GET request, the response
//! (head and body framing from `codec`: chunked, Content-Length or close-delimited), the FLV
//! demuxer, and what keeps a relayed stream one valid FLV across upstream reconnects (the restart
//! marked for the hub's ingest normaliser, repeated sequence headers dropped). No sockets and no clock: the server's
//! `upstream` module owns the connection, the retries and the hub calls.

use std::fmt;

use bytes::{Bytes, BytesMut};

use crate::codec::chunked::{ChunkedDecoder, ChunkedError};
use crate::codec::http_head::{self, Framing, HeadError, ResponseHead};
use crate::media::{Frame, StreamKey, Track};
use crate::mux::flv_demux::{FlvDemuxer, FlvError, FlvItem};

/// Largest response head accepted from the upstream.
pub const MAX_HEAD: usize = http_head::MAX_HEAD;
/// Largest FLV tag body accepted from an upstream (a 4K keyframe is well under this).
pub const MAX_TAG: u32 = 8 * 1024 * 1024;
/// Redirects followed per connection attempt.
pub const MAX_REDIRECTS: u8 = 3;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UrlError {
    /// Only `http://` and `https://` upstreams are supported.
    Scheme,
    /// No host, or a bad port.
    Authority,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UrlError::Scheme => "the upstream must be an http:// or https:// URL",
            UrlError::Authority => "the upstream URL needs a host and a valid port",
        })
    }
}

impl std::error::Error for UrlError {}

/// `http[s]://HOST[:PORT][/BASE]`: where every stream is pulled from, as `{BASE}/{app}/{stream}.flv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    /// `https://`: the pull goes over TLS, verified against the system roots or `--upstream-ca`.
    pub tls: bool,
    /// Host as written (an IPv6 literal keeps its brackets, as the Host header wants).
    pub host: String,
    pub port: u16,
    /// Path prefix without a trailing slash ("" for none).
    pub base: String,
    /// A query (without `?`) sent with every stream request, e.g. a play token for the origin.
    pub query: String,
}

impl UpstreamUrl {
    pub fn parse(s: &str) -> Result<UpstreamUrl, UrlError> {
        let (scheme, rest) = s.split_once("://").ok_or(UrlError::Scheme)?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(UrlError::Scheme);
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, q),
            None => (rest, ""),
        };
        if rest.contains('#') || query.contains('#') {
            return Err(UrlError::Authority);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let default_port = if tls { 443 } else { 80 };
        let (host, port) = split_authority(authority, default_port).ok_or(UrlError::Authority)?;
        Ok(UpstreamUrl {
            tls,
            host: host.to_string(),
            port,
            base: path.trim_end_matches('/').to_string(),
            query: query.to_string(),
        })
    }

    /// `host:port` for the Host header and for resolving.
    pub fn authority(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// The host without IPv6 brackets, for `ToSocketAddrs`.
    pub fn bare_host(&self) -> &str {
        self.host.trim_start_matches('[').trim_end_matches(']')
    }

    /// The upstream request target of a stream (with the URL's query, if any).
    pub fn path_for(&self, key: &StreamKey) -> String {
        let mut p = format!("{}/{}/{}.flv", self.base, key.app, key.stream);
        if !self.query.is_empty() {
            p.push('?');
            p.push_str(&self.query);
        }
        p
    }

    /// The path to follow for a redirect's `Location`, when it stays on this host, port and
    /// scheme (a relative reference, or an absolute URL with the same origin); else None: an
    /// https upstream is never followed down to plain http.
    pub fn redirect_path(&self, location: &str) -> Option<String> {
        if location.starts_with('/') && !location.starts_with("//") {
            return Some(location.to_string());
        }
        let target = UpstreamUrl::parse(location).ok()?;
        let same = target.tls == self.tls
            && target.host.eq_ignore_ascii_case(&self.host)
            && target.port == self.port;
        same.then(|| {
            let mut path = if target.base.is_empty() {
                "/".to_string()
            } else {
                target.base
            };
            if !target.query.is_empty() {
                path.push('?');
                path.push_str(&target.query);
            }
            path
        })
    }
}

impl fmt::Display for UpstreamUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The query is left out: it may hold a token, and this goes to logs and the API.
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}:{}{}", self.host, self.port, self.base)
    }
}

/// `host[:port]` or `[v6][:port]`; the port defaults to `default_port`.
fn split_authority(a: &str, default_port: u16) -> Option<(&str, u16)> {
    let (host, port) = if a.starts_with('[') {
        let end = a.find(']')?;
        let port = a[end + 1..].strip_prefix(':');
        (&a[..=end], port)
    } else {
        match a.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (a, None),
        }
    };
    if host.is_empty() || host.contains('@') {
        return None;
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().ok().filter(|&p| p != 0)?,
    };
    Some((host, port))
}

/// The GET for one stream. `Connection: close`: the body is a live stream that never ends on
/// its own, so there is nothing to keep alive.
pub fn request(url: &UpstreamUrl, path: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: rtmpd/{} (flv-gateway)\r\nAccept: */*\r\n\
         Connection: close\r\n\r\n",
        url.authority(),
        crate::VERSION
    )
    .into_bytes()
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullError {
    /// The response head is not HTTP/1.x.
    BadHead,
    /// The response head is larger than `MAX_HEAD`.
    HeadTooLarge,
    /// A chunked body broke the chunk syntax.
    BadChunk,
    /// The body is not a valid FLV stream.
    Flv(FlvError),
}

impl fmt::Display for PullError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PullError::BadHead => f.write_str("malformed HTTP response head"),
            PullError::HeadTooLarge => f.write_str("HTTP response head too large"),
            PullError::BadChunk => f.write_str("malformed chunked body"),
            PullError::Flv(e) => write!(f, "bad FLV from upstream: {e}"),
        }
    }
}

impl std::error::Error for PullError {}

impl From<FlvError> for PullError {
    fn from(e: FlvError) -> Self {
        PullError::Flv(e)
    }
}

/// What the response head said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// 200: an FLV body follows.
    Ok,
    /// 404: the stream is not live upstream (yet).
    NotFound,
    /// 301/302/307/308 with this `Location`.
    Redirect(String),
    /// Anything else (or a redirect without a Location).
    Other(u16),
}

/// One thing out of an upstream response.
#[derive(Debug, Clone)]
pub enum Event {
    /// The head arrived.
    Head(Status),
    /// The FLV file header.
    Header {
        has_audio: bool,
        has_video: bool,
    },
    Frame(Frame),
    /// The body ended by its own framing (last chunk, or Content-Length reached).
    End,
}

#[derive(Debug)]
enum State {
    Head,
    Body(Framing),
    Done,
}

/// One upstream response, fed with the bytes read from its socket.
#[derive(Debug)]
pub struct Response {
    state: State,
    head: BytesMut,
    /// De-framed body bytes the demuxer has not consumed (at most one partial tag).
    body: BytesMut,
    chunks: ChunkedDecoder,
    demux: FlvDemuxer,
}

impl Default for Response {
    fn default() -> Self {
        Self::new()
    }
}

impl Response {
    pub fn new() -> Response {
        Response {
            state: State::Head,
            head: BytesMut::new(),
            body: BytesMut::new(),
            chunks: ChunkedDecoder::new(),
            demux: FlvDemuxer::with_max_tag(MAX_TAG),
        }
    }

    /// True once the head or the body said everything it will say.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Consumes `data`, appending what it completes to `out`. An error ends the response.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<Event>) -> Result<(), PullError> {
        let mut data = data;
        if let State::Head = self.state {
            let room = MAX_HEAD + 1 - self.head.len().min(MAX_HEAD + 1);
            let take = data.len().min(room);
            self.head.extend_from_slice(&data[..take]);
            let Some(head) = http_head::parse_response(&self.head, MAX_HEAD)? else {
                return Ok(());
            };
            let (status, framing) = (status_of(&head), head.framing(false));
            // Bytes past the head (in this call) are the start of the body.
            let extra = self.head.len() - head.len;
            data = &data[take - extra..];
            self.head = BytesMut::new();
            let ok = status == Status::Ok;
            out.push(Event::Head(status));
            if !ok {
                self.state = State::Done;
                return Ok(());
            }
            self.state = State::Body(framing);
        }
        let State::Body(framing) = self.state else {
            return Ok(());
        };
        let ended = match framing {
            Framing::Empty => true,
            Framing::Close => {
                self.body.extend_from_slice(data);
                false
            }
            Framing::Length(left) => {
                let take = (data.len() as u64).min(left) as usize;
                self.body.extend_from_slice(&data[..take]);
                self.state = State::Body(Framing::Length(left - take as u64));
                left == take as u64
            }
            Framing::Chunked => {
                let body = &mut self.body;
                self.chunks.decode(data, |d| body.extend_from_slice(d))?;
                self.chunks.is_done()
            }
        };
        while let Some(item) = self.demux.next(&mut self.body)? {
            out.push(match item {
                FlvItem::Header {
                    has_audio,
                    has_video,
                } => Event::Header {
                    has_audio,
                    has_video,
                },
                FlvItem::Frame(f) => Event::Frame(f),
            });
        }
        if ended {
            self.state = State::Done;
            out.push(Event::End);
        }
        Ok(())
    }
}

/// The status a response head says, for the relay.
fn status_of(head: &ResponseHead) -> Status {
    match (head.status, head.header("location")) {
        (200, _) => Status::Ok,
        (404, _) => Status::NotFound,
        (301 | 302 | 307 | 308, Some(l)) => Status::Redirect(l.to_string()),
        (other, _) => Status::Other(other),
    }
}

impl From<HeadError> for PullError {
    fn from(e: HeadError) -> Self {
        match e {
            HeadError::TooLarge => PullError::HeadTooLarge,
            HeadError::Malformed(_) | HeadError::BadLength => PullError::BadHead,
        }
    }
}

impl From<ChunkedError> for PullError {
    fn from(_: ChunkedError) -> Self {
        PullError::BadChunk
    }
}

/// The last metadata and sequence headers relayed: a new upstream session repeats them, and
/// viewers must not get identical ones again (harmless for most players, but noise); a
/// different one is a codec configuration change and goes through.
#[derive(Debug, Default, Clone)]
pub struct Headers {
    meta: Option<Bytes>,
    video: Option<Bytes>,
    audio: Option<Bytes>,
}

/// What `Headers::check` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderCheck {
    /// Not a header frame.
    Media,
    /// The first header of its kind.
    New,
    /// The same bytes as the last one relayed: drop it.
    Repeat,
    /// A different header: the codec configuration (or metadata) changed.
    Changed,
}

impl Headers {
    pub fn check(&mut self, frame: &Frame) -> HeaderCheck {
        let slot = match frame.track {
            Track::Meta => &mut self.meta,
            Track::Video if frame.config => &mut self.video,
            Track::Audio if frame.config => &mut self.audio,
            _ => return HeaderCheck::Media,
        };
        let verdict = match slot {
            None => HeaderCheck::New,
            Some(b) if *b == frame.data => return HeaderCheck::Repeat,
            Some(_) => HeaderCheck::Changed,
        };
        *slot = Some(frame.data.clone());
        verdict
    }
}

/// What the relay does to each upstream frame: repeated headers dropped, and the first frame of
/// a later upstream session marked as a clock restart (`Frame::discontinuity`), so that the hub's
/// ingest normaliser (`media::time`) continues the stream time across the reconnect instead of
/// showing viewers the restart or the hole of the outage.
#[derive(Debug, Default)]
pub struct Relay {
    pub headers: Headers,
    /// Header changes seen (for the log and the API).
    pub config_changes: u64,
    /// A frame was relayed in this relay's lifetime.
    relayed: bool,
    /// A new upstream session began and none of its frames was relayed yet.
    restart: bool,
}

impl Relay {
    /// Call when a new upstream response starts delivering a body.
    pub fn new_session(&mut self) {
        self.restart = self.relayed;
    }

    /// The frame to publish, or None when it repeats a header already relayed.
    pub fn process(&mut self, mut frame: Frame) -> Option<Frame> {
        match self.headers.check(&frame) {
            HeaderCheck::Repeat => return None,
            HeaderCheck::Changed => self.config_changes += 1,
            HeaderCheck::Media | HeaderCheck::New => {}
        }
        frame.discontinuity = std::mem::take(&mut self.restart);
        self.relayed = true;
        Some(frame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::Codec;
    use crate::mux::flv::{file_header, tag_header, tag_trailer};

    fn fixture() -> Vec<u8> {
        let path = format!("{}/tests/data/fixture.flv", env!("CARGO_MANIFEST_DIR"));
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A small FLV: metadata, both sequence headers, keyframe, audio, inter frame.
    fn small_flv() -> Vec<u8> {
        let mut v = file_header(true, true).to_vec();
        let tags: [(u8, u32, &[u8]); 6] = [
            (18, 0, b"\x02\x00\x0aonMetaData\x05"),
            (9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            (8, 0, &[0xaf, 0, 0x12, 0x10]),
            (9, 0, &[0x17, 1, 0, 0, 0x50, 0, 0, 0, 1, 0x65]),
            (8, 23, &[0xaf, 1, 0x21, 0x22]),
            (9, 40, &[0x27, 1, 0, 0, 0, 0, 0, 0, 1, 0x41]),
        ];
        for (t, ts, body) in tags {
            v.extend_from_slice(&tag_header(t, body.len(), ts));
            v.extend_from_slice(body);
            v.extend_from_slice(&tag_trailer(body.len()));
        }
        v
    }

    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut rest = body;
        let mut i = 0;
        while !rest.is_empty() {
            let n = sizes[i % sizes.len()].min(rest.len());
            out.extend_from_slice(format!("{n:x};ext=1\r\n").as_bytes());
            out.extend_from_slice(&rest[..n]);
            out.extend_from_slice(b"\r\n");
            rest = &rest[n..];
            i += 1;
        }
        out.extend_from_slice(b"0\r\nX-Trailer: yes\r\n\r\n");
        out
    }

    fn ok_head(framing: &str) -> Vec<u8> {
        format!("HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\n{framing}\r\n").into_bytes()
    }

    type Sig = (Track, u32, i32, bool, bool, Bytes);

    fn sig(f: &Frame) -> Sig {
        (f.track, f.dts, f.cts, f.key, f.config, f.data.clone())
    }

    /// Feeds `data` cut at `cuts`; returns the events as comparable values.
    fn run(data: &[u8], cuts: &[usize]) -> Result<(Vec<Status>, Vec<Sig>, bool), PullError> {
        let mut r = Response::new();
        let mut events = Vec::new();
        let mut at = 0;
        for &c in cuts.iter().chain(std::iter::once(&data.len())) {
            r.feed(&data[at..c], &mut events)?;
            at = c;
        }
        let mut heads = Vec::new();
        let mut frames = Vec::new();
        let mut ended = false;
        for e in events {
            match e {
                Event::Head(s) => heads.push(s),
                Event::Header { .. } => {}
                Event::Frame(f) => frames.push(sig(&f)),
                Event::End => ended = true,
            }
        }
        Ok((heads, frames, ended))
    }

    fn whole_file_frames(flv: &[u8]) -> Vec<Sig> {
        let (_, _, frames) = crate::mux::flv_demux::read_all(flv).unwrap();
        frames.iter().map(sig).collect()
    }

    #[test]
    fn every_split_point_gives_the_same_frames() {
        let flv = small_flv();
        let want = whole_file_frames(&flv);
        assert_eq!(want.len(), 6);
        for (framing, body) in [
            ("Transfer-Encoding: chunked\r\n", chunked(&flv, &[7, 1, 30])),
            (&*format!("Content-Length: {}\r\n", flv.len()), flv.clone()),
            ("", flv.clone()),
        ] {
            let mut data = ok_head(framing);
            data.extend_from_slice(&body);
            for a in 0..=data.len() {
                let (heads, frames, _) = run(&data, &[a]).unwrap();
                assert_eq!(heads, vec![Status::Ok], "split {a} ({framing:?})");
                assert_eq!(frames, want, "split {a} ({framing:?})");
            }
            // Byte by byte too.
            let cuts: Vec<usize> = (1..data.len()).collect();
            let (_, frames, ended) = run(&data, &cuts).unwrap();
            assert_eq!(frames, want);
            assert_eq!(ended, !framing.is_empty(), "{framing:?}");
        }
    }

    #[test]
    fn fixture_through_chunked_response_at_many_split_pairs() {
        let flv = fixture();
        let want = whole_file_frames(&flv);
        assert!(want.len() > 100);
        let mut data = ok_head("Transfer-Encoding: chunked\r\n");
        data.extend_from_slice(&chunked(&flv, &[4096, 13, 70000]));
        // Every split point would be slow on a fixture this size in debug builds: a prime
        // stride covers every offset class of tags and chunk lines.
        for a in (0..data.len()).step_by(977) {
            let b = (a + 331).min(data.len());
            let (_, frames, ended) = run(&data, &[a, b]).unwrap();
            assert_eq!(frames.len(), want.len(), "split {a},{b}");
            assert!(frames == want, "split {a},{b}");
            assert!(ended);
        }
    }

    #[test]
    fn content_length_stops_at_its_end() {
        let flv = small_flv();
        let mut data = ok_head(&format!("Content-Length: {}\r\n", flv.len()));
        data.extend_from_slice(&flv);
        data.extend_from_slice(b"garbage after the body");
        let (_, frames, ended) = run(&data, &[]).unwrap();
        assert_eq!(frames.len(), 6);
        assert!(ended);
    }

    #[test]
    fn statuses() {
        for (head, want) in [
            ("HTTP/1.1 404 Not Found\r\n\r\n", Status::NotFound),
            (
                "HTTP/1.1 302 Found\r\nLocation: /live/other.flv\r\n\r\n",
                Status::Redirect("/live/other.flv".into()),
            ),
            ("HTTP/1.0 301 Moved\r\n\r\n", Status::Other(301)),
            (
                "HTTP/1.1 503 Busy\r\nContent-Length: 3\r\n\r\nabc",
                Status::Other(503),
            ),
        ] {
            let (heads, frames, _) = run(head.as_bytes(), &[]).unwrap();
            assert_eq!(heads, vec![want]);
            assert!(frames.is_empty());
        }
        assert_eq!(
            run(b"SSH-2.0-OpenSSH\r\n\r\n", &[]),
            Err(PullError::BadHead)
        );
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(run(huge.as_bytes(), &[]), Err(PullError::HeadTooLarge));
    }

    #[test]
    fn bad_bodies_are_refused() {
        // An HTML page with a 200 is not FLV.
        let mut data = ok_head("");
        data.extend_from_slice(b"<html>");
        assert_eq!(run(&data, &[]), Err(PullError::Flv(FlvError::BadSignature)));
        // A tag claiming more than the cap.
        let mut flv = file_header(true, true).to_vec();
        flv.extend_from_slice(&tag_header(9, MAX_TAG as usize + 1, 0));
        let mut data = ok_head("");
        data.extend_from_slice(&flv);
        assert_eq!(
            run(&data, &[]),
            Err(PullError::Flv(FlvError::TagTooLarge(MAX_TAG + 1)))
        );
        // A PreviousTagSize that disagrees with the tag.
        let mut flv = small_flv();
        let n = flv.len();
        flv[n - 1] ^= 0x55;
        let mut data = ok_head("");
        data.extend_from_slice(&flv);
        assert!(matches!(
            run(&data, &[]),
            Err(PullError::Flv(FlvError::BadPreviousTagSize { .. }))
        ));
        // Broken chunk syntax.
        for body in [&b"zz\r\n"[..], b"3\r\nFLVxx\r\n", &[b'1'; 2000]] {
            let mut data = ok_head("Transfer-Encoding: chunked\r\n");
            data.extend_from_slice(body);
            assert_eq!(run(&data, &[]), Err(PullError::BadChunk), "{body:?}");
        }
    }

    #[test]
    fn urls_and_redirects() {
        let u = UpstreamUrl::parse("http://10.0.0.5:8501").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.base.as_str()),
            ("10.0.0.5", 8501, "")
        );
        let key = StreamKey::new("live", "stream").unwrap();
        assert_eq!(u.path_for(&key), "/live/stream.flv");
        let b = UpstreamUrl::parse("http://example.com/relay/").unwrap();
        assert_eq!(
            (b.port, b.path_for(&key).as_str()),
            (80, "/relay/live/stream.flv")
        );
        let q = UpstreamUrl::parse("http://o:8501?token=s3cret").unwrap();
        assert_eq!(q.path_for(&key), "/live/stream.flv?token=s3cret");
        assert_eq!(q.to_string(), "http://o:8501", "no token in logs");
        let v6 = UpstreamUrl::parse("http://[::1]:9000").unwrap();
        assert_eq!(
            (v6.bare_host(), v6.authority().as_str()),
            ("::1", "[::1]:9000")
        );
        let s = UpstreamUrl::parse("HTTPS://origin.example/relay").unwrap();
        assert_eq!(
            (s.tls, s.port, s.to_string().as_str()),
            (true, 443, "https://origin.example:443/relay")
        );
        assert!(!u.tls);
        assert_eq!(
            s.redirect_path("https://origin.example:443/x.flv")
                .as_deref(),
            Some("/x.flv")
        );
        assert_eq!(
            s.redirect_path("http://origin.example:443/x.flv"),
            None,
            "never down to http"
        );
        for bad in [
            "rtmp://a:1",
            "ftp://a",
            "a:1",
            "http://:80",
            "http://a:0",
            "http://a:x",
            "http://u@a",
        ] {
            assert!(UpstreamUrl::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            u.redirect_path("/live/b.flv").as_deref(),
            Some("/live/b.flv")
        );
        assert_eq!(
            u.redirect_path("http://10.0.0.5:8501/x/y.flv").as_deref(),
            Some("/x/y.flv")
        );
        assert_eq!(
            u.redirect_path("http://10.0.0.5:8501/x/y.flv?t=1")
                .as_deref(),
            Some("/x/y.flv?t=1")
        );
        assert_eq!(u.redirect_path("http://10.0.0.6:8501/x/y.flv"), None);
        assert_eq!(u.redirect_path("http://10.0.0.5:8502/x/y.flv"), None);
        assert_eq!(u.redirect_path("//evil/x"), None);
        let req = String::from_utf8(request(&u, "/live/stream.flv")).unwrap();
        assert!(req.starts_with("GET /live/stream.flv HTTP/1.1\r\nHost: 10.0.0.5:8501\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }

    fn frame(track: Track, dts: u32, key: bool, config: bool) -> Frame {
        Frame {
            track,
            dts,
            time: dts as u64,
            discontinuity: false,
            cts: 0,
            key,
            config,
            codec: match track {
                Track::Audio => Codec::Aac,
                Track::Video => Codec::Avc,
                Track::Meta => Codec::Script,
            },
            track_id: 0,
            bridged: false,
            data: Bytes::from_static(b"x"),
        }
    }

    #[test]
    fn a_later_upstream_session_is_marked_as_a_clock_restart() {
        // The rebasing itself is the hub's normaliser's (media::time tests
        // `a_source_restart_rebases_its_next_media_frame` and `a_restart_across_the_wrap`).
        let mut relay = Relay::default();
        relay.new_session();
        let first = relay
            .process(frame(Track::Video, 1000, true, false))
            .unwrap();
        assert!(!first.discontinuity, "the first session is not a restart");
        relay.new_session();
        let meta = relay.process(frame(Track::Meta, 0, true, false)).unwrap();
        assert!(meta.discontinuity, "the new session's first frame says so");
        let v = relay.process(frame(Track::Video, 0, true, false)).unwrap();
        assert!(!v.discontinuity, "only once");
        // A dropped repeat does not swallow the mark.
        relay.new_session();
        assert!(relay.process(frame(Track::Meta, 0, true, false)).is_none());
        assert!(
            relay
                .process(frame(Track::Video, 5, true, false))
                .unwrap()
                .discontinuity
        );
    }

    #[test]
    fn repeated_headers_are_dropped_and_changes_pass() {
        let mut relay = Relay::default();
        let cfg = |b: &'static [u8]| Frame {
            data: Bytes::from_static(b),
            ..frame(Track::Video, 0, true, true)
        };
        assert!(relay.process(cfg(b"\x17\x00sps1")).is_some());
        assert!(relay.process(frame(Track::Video, 0, true, false)).is_some());
        relay.new_session();
        assert!(
            relay.process(cfg(b"\x17\x00sps1")).is_none(),
            "same config again"
        );
        assert!(
            relay.process(cfg(b"\x17\x00sps2")).is_some(),
            "a new config"
        );
        assert_eq!(relay.config_changes, 1);
        // Audio config and metadata are tracked separately.
        let mut a = frame(Track::Audio, 0, true, true);
        a.data = Bytes::from_static(b"\xaf\x00\x12\x10");
        assert!(relay.process(a.clone()).is_some());
        assert!(relay.process(a).is_none());
    }
}
