//! HTTP/1.x response heads, client side: status, version, headers and how the body is framed
//! (RFC 9112 section 6.3), parsed with httparse under a size limit. Push parsing: an incomplete
//! head is `Ok(None)`. Does not decode bodies (`codec::chunked`) and does not parse requests
//! (the server's `http::request`).

use std::fmt;

/// Default cap on a response head, status line and headers together.
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields in a response head.
pub const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Not an HTTP/1.x response head (httparse's reason).
    Malformed(httparse::Error),
    /// Larger than the caller's limit, or more than `MAX_HEADERS` fields.
    TooLarge,
    /// A Content-Length that is not a number, or several that disagree.
    BadLength,
}

impl fmt::Display for HeadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeadError::Malformed(e) => write!(f, "bad response head: {e}"),
            HeadError::TooLarge => f.write_str("response head too large"),
            HeadError::BadLength => f.write_str("bad Content-Length in response head"),
        }
    }
}

impl std::error::Error for HeadError {}

/// How the body after a head ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: a HEAD request, 1xx, 204 or 304.
    Empty,
    /// `Transfer-Encoding: ...chunked` (chunked as the final coding).
    Chunked,
    /// `Content-Length` bytes.
    Length(u64),
    /// The body runs until the server closes the connection.
    Close,
}

/// A complete response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// Bytes of the head, blank line included: the body starts at this offset.
    pub len: usize,
    pub status: u16,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Names and values as sent (values decoded lossily as UTF-8).
    pub headers: Vec<(String, String)>,
    /// Transfer-Encoding ends in chunked.
    chunked: bool,
    /// Transfer-Encoding is present (then Content-Length is ignored, RFC 9112 6.3).
    transfer_coded: bool,
    content_length: Option<u64>,
}

impl ResponseHead {
    /// The first header named `name` (case-insensitive), trimmed.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The Content-Length, if one was sent.
    pub fn content_length(&self) -> Option<u64> {
        self.content_length
    }

    /// How the body is framed; `head_request` when this answers a HEAD.
    pub fn framing(&self, head_request: bool) -> Framing {
        if head_request || self.status < 200 || self.status == 204 || self.status == 304 {
            Framing::Empty
        } else if self.chunked {
            Framing::Chunked
        } else if self.transfer_coded {
            Framing::Close
        } else if let Some(n) = self.content_length {
            Framing::Length(n)
        } else {
            Framing::Close
        }
    }
}

/// Parses the response head at the start of `buf`; `Ok(None)` while it is incomplete and
/// within `max_len` bytes.
pub fn parse_response(buf: &[u8], max_len: usize) -> Result<Option<ResponseHead>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut fields);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) if n <= max_len => n,
        Ok(httparse::Status::Complete(_)) => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) if buf.len() > max_len => return Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(HeadError::TooLarge),
        Err(e) => return Err(HeadError::Malformed(e)),
    };
    let mut head = ResponseHead {
        len,
        // A complete parse always has both.
        status: resp.code.unwrap_or(0),
        minor_version: resp.version.unwrap_or(1),
        headers: Vec::with_capacity(resp.headers.len()),
        chunked: false,
        transfer_coded: false,
        content_length: None,
    };
    for h in resp.headers.iter() {
        let value = String::from_utf8_lossy(h.value).into_owned();
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            head.transfer_coded = true;
            // Several fields form one list; the last one's final coding decides.
            head.chunked = value
                .rsplit(',')
                .next()
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let n = parse_length(&value)?;
            if head.content_length.is_some_and(|m| m != n) {
                return Err(HeadError::BadLength);
            }
            head.content_length = Some(n);
        }
        head.headers.push((h.name.to_string(), value));
    }
    Ok(Some(head))
}

/// `1*DIGIT`, or a list of equal ones (`5, 5`, which RFC 9110 8.6 lets a recipient accept).
fn parse_length(value: &str) -> Result<u64, HeadError> {
    let mut out = None;
    for part in value.split(',') {
        let part = part.trim();
        if part.is_empty() || part.len() > 19 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HeadError::BadLength);
        }
        let n: u64 = part.parse().map_err(|_| HeadError::BadLength)?;
        if out.is_some_and(|m| m != n) {
            return Err(HeadError::BadLength);
        }
        out = Some(n);
    }
    out.ok_or(HeadError::BadLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Want = Result<(u16, u8, Framing), HeadError>;

    fn check(input: &[u8], want: &Want, head_request: bool) {
        let full = input
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map(|i| i + 4);
        let want = &want.clone().map(|(s, v, f)| (s, v, f, full.unwrap_or(0)));
        for cut in 0..=input.len() {
            let got = parse_response(&input[..cut], MAX_HEAD)
                .map(|h| h.map(|h| (h.status, h.minor_version, h.framing(head_request), h.len)));
            let text = String::from_utf8_lossy(input);
            match want {
                // Before the blank line completes, a valid head is "need more".
                Ok(w) if cut < w.3 => assert_eq!(got, Ok(None), "{text:?} cut {cut}"),
                Ok(w) => assert_eq!(got, Ok(Some(*w)), "{text:?} cut {cut}"),
                // An invalid head is an error once the bad byte is in, "need more" before.
                Err(e) => assert!(
                    got == Ok(None) || got.as_ref() == Err(e),
                    "{text:?} cut {cut}: {got:?}"
                ),
            }
        }
        let got = parse_response(input, MAX_HEAD)
            .map(|h| h.map(|h| (h.status, h.minor_version, h.framing(head_request), h.len)));
        assert_eq!(
            got,
            want.clone().map(Some),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }

    #[test]
    fn table_at_every_split_point() {
        let cases: &[(&str, Want)] = &[
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                Ok((200, 1, Framing::Chunked)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, Chunked\r\nContent-Length: 9\r\n\r\nbody",
                Ok((200, 1, Framing::Chunked)),
            ),
            (
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nContent-Length: 9\r\n\r\n",
                Ok((200, 1, Framing::Close)),
            ),
            (
                "HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\n",
                Ok((200, 0, Framing::Length(12))),
            ),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n",
                Ok((200, 1, Framing::Length(12))),
            ),
            ("HTTP/1.0 200 OK\r\n\r\n", Ok((200, 0, Framing::Close))),
            (
                "HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
                Ok((304, 1, Framing::Empty)),
            ),
            ("HTTP/1.1 204 No Content\r\n\r\n", Ok((204, 1, Framing::Empty))),
            (
                "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
                Ok((101, 1, Framing::Empty)),
            ),
            (
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n",
                Ok((404, 1, Framing::Length(0))),
            ),
            (
                "SSH-2.0-OpenSSH\r\n\r\n",
                Err(HeadError::Malformed(httparse::Error::Version)),
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", Err(HeadError::BadLength)),
            ("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", Err(HeadError::BadLength)),
            (
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                Err(HeadError::BadLength),
            ),
            ("HTTP/1.1 200 OK\r\nContent-Length: 1, 2\r\n\r\n", Err(HeadError::BadLength)),
        ];
        for (input, want) in cases {
            check(input.as_bytes(), want, false);
        }
        // A HEAD answer has no body whatever its headers say.
        check(
            b"HTTP/1.1 200 OK\r\nContent-Length: 12\r\n\r\n",
            &Ok((200, 1, Framing::Empty)),
            true,
        );
    }

    #[test]
    fn headers_are_kept_and_looked_up_without_case() {
        let h = parse_response(
            b"HTTP/1.1 302 Found\r\nLocation:  /live/b.flv \r\nX-A: 1\r\nx-a: 2\r\n\r\n",
            MAX_HEAD,
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.header("location"), Some("/live/b.flv"));
        assert_eq!(h.header("X-A"), Some("1"));
        assert_eq!(h.header("missing"), None);
        assert_eq!(h.headers.len(), 3);
        assert_eq!(h.headers[2], ("x-a".to_string(), "2".to_string()));
        assert_eq!(h.content_length(), None);
    }

    #[test]
    fn limits() {
        let huge = format!("HTTP/1.1 200 OK\r\nX: {}\r\n", "a".repeat(MAX_HEAD));
        assert_eq!(
            parse_response(huge.as_bytes(), MAX_HEAD),
            Err(HeadError::TooLarge)
        );
        // A complete head over the limit is refused too, not only a partial one.
        let big = format!("HTTP/1.1 200 OK\r\nX: {}\r\n\r\n", "a".repeat(200));
        assert_eq!(
            parse_response(big.as_bytes(), 100),
            Err(HeadError::TooLarge)
        );
        assert!(parse_response(big.as_bytes(), 1000).unwrap().is_some());
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: v\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(
            parse_response(many.as_bytes(), MAX_HEAD),
            Err(HeadError::TooLarge)
        );
        assert_eq!(
            parse_response(
                b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
                MAX_HEAD
            ),
            Err(HeadError::BadLength)
        );
    }

    /// Hostile input: mutated heads never panic; whatever parses has a length within the input.
    #[test]
    fn mutated_heads_never_panic() {
        let mut rng = crate::testutil::Rng::new(0x4ead);
        let valid = b"HTTP/1.1 302 Found\r\nLocation: /a\r\nContent-Length: 12\r\n\
                      Transfer-Encoding: chunked\r\n\r\nbody";
        for _ in 0..5000 {
            let input = rng.mutate(valid);
            if let Ok(Some(h)) = parse_response(&input, 64) {
                assert!(h.len <= input.len() && h.len <= 64);
                let _ = h.framing(rng.below(2) == 0);
            }
        }
    }
}
