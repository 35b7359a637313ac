//! The HTTP answers LL-HLS sends, as bytes: playlists (short max-age, cached per full URL),
//! init/parts/segments (immutable once they exist) and errors (never cached). No routing here.

use crate::http::response::reason;
use bytes::Bytes;

pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
pub const MEDIA_TYPE: &str = "video/mp4";

/// A response head and its body chunks (shared `Bytes`, written in order, never copied).
#[derive(Debug)]
pub struct Answer {
    pub head: Vec<u8>,
    pub body: Vec<Bytes>,
}

impl Answer {
    /// The whole response in one buffer (tests, small answers).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = self.head.clone();
        self.body.iter().for_each(|b| out.extend_from_slice(b));
        out
    }
}

fn head(status: u16, content_type: &str, len: usize, cache: &str, keep_alive: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status} {}\r\nServer: rtmpd\r\nContent-Type: {content_type}\r\nContent-Length: {len}\r\n\
         Cache-Control: {cache}\r\nAccess-Control-Allow-Origin: *\r\nConnection: {}\r\n\r\n",
        reason(status),
        if keep_alive { "keep-alive" } else { "close" }
    )
    .into_bytes()
}

/// A playlist: a blocking answer is fresh when sent and stale a part later, so one second.
pub fn playlist(text: String, keep_alive: bool, head_only: bool) -> Answer {
    let body = Bytes::from(text);
    Answer {
        head: head(200, PLAYLIST_TYPE, body.len(), "max-age=1", keep_alive),
        body: if head_only { Vec::new() } else { vec![body] },
    }
}

/// Init, part or segment: the bytes never change once they exist.
pub fn media(chunks: Vec<Bytes>, keep_alive: bool, head_only: bool) -> Answer {
    let len = chunks.iter().map(|c| c.len()).sum();
    Answer {
        head: head(200, MEDIA_TYPE, len, "max-age=60", keep_alive),
        body: if head_only { Vec::new() } else { chunks },
    }
}

/// 400 (bad or too-far query), 404 (unknown or evicted), 503 (timeout, too many waiting).
pub fn error(status: u16, keep_alive: bool) -> Answer {
    let body = Bytes::from(format!("{}\n", reason(status)));
    Answer {
        head: head(
            status,
            "text/plain; charset=utf-8",
            body.len(),
            "no-cache",
            keep_alive,
        ),
        body: vec![body],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_and_bodies() {
        let p = playlist("#EXTM3U\n".into(), true, false).to_vec();
        let p = String::from_utf8(p).unwrap();
        assert!(p.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(p.contains("Content-Type: application/vnd.apple.mpegurl\r\n"));
        assert!(p.contains("Content-Length: 8\r\nCache-Control: max-age=1\r\n"));
        assert!(p.ends_with("\r\n\r\n#EXTM3U\n"));
        let m = media(
            vec![Bytes::from_static(b"ab"), Bytes::from_static(b"c")],
            false,
            false,
        );
        let text = String::from_utf8(m.to_vec()).unwrap();
        assert!(text.contains("video/mp4\r\nContent-Length: 3\r\nCache-Control: max-age=60\r\n"));
        assert!(text.contains("Connection: close\r\n") && text.ends_with("\r\n\r\nabc"));
        assert!(media(vec![Bytes::from_static(b"ab")], true, true)
            .body
            .is_empty());
        let e = String::from_utf8(error(503, true).to_vec()).unwrap();
        assert!(e.starts_with("HTTP/1.1 503 Service Unavailable\r\n"));
        assert!(e.contains("Cache-Control: no-cache\r\n"));
    }
}
