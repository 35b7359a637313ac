//! HTTP/1.x request heads parsed with httparse, with hard limits and unambiguous framing (one
//! Content-Length or Transfer-Encoding, never both). Push parsing: an incomplete head is
//! `Ok(None)`; an error means the client broke HTTP and gets 400 or 431, then close.

/// Largest request head we accept (request line + headers).
pub const MAX_HEAD: usize = 16 * 1024;
/// Most header fields we accept.
pub const MAX_HEADERS: usize = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The raw request-target, including any `?query`.
    pub target: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub version: u8,
    pub headers: Vec<(String, String)>,
    /// The request announces a body (Content-Length > 0 or Transfer-Encoding). No method we
    /// serve takes one, so the server answers and closes without reading it.
    pub has_body: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// The head is larger than `MAX_HEAD` or has more than `MAX_HEADERS` fields: 431.
    TooLarge,
    /// Not HTTP/1.x, or a request with a body (we take none): 400.
    Malformed,
    /// Content-Length repeated (even with equal values), not one decimal number, or sent with
    /// Transfer-Encoding: where the body ends is ambiguous (RFC 9112 6.3), so the connection
    /// cannot be trusted to find the next request: 400, then close.
    AmbiguousFraming,
}

impl ParseError {
    pub fn status(self) -> u16 {
        match self {
            ParseError::TooLarge => 431,
            ParseError::Malformed | ParseError::AmbiguousFraming => 400,
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ParseError::TooLarge => "request head too large",
            ParseError::Malformed => "malformed request",
            ParseError::AmbiguousFraming => {
                "repeated or invalid Content-Length, or Content-Length with Transfer-Encoding"
            }
        })
    }
}

impl std::error::Error for ParseError {}

/// Parses one request head from the front of `buf`. Returns the request and the head length.
pub fn parse(buf: &[u8]) -> Result<Option<(Request, usize)>, ParseError> {
    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut fields);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => {
            return if buf.len() > MAX_HEAD {
                Err(ParseError::TooLarge)
            } else {
                Ok(None)
            };
        }
        Err(httparse::Error::TooManyHeaders) => return Err(ParseError::TooLarge),
        Err(_) => return Err(ParseError::Malformed),
    };
    if len > MAX_HEAD {
        return Err(ParseError::TooLarge);
    }
    let headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_string(),
                String::from_utf8_lossy(h.value).trim().to_string(),
            )
        })
        .collect();
    let mut request = Request {
        method: req.method.unwrap_or("").to_string(),
        target: req.path.unwrap_or("").to_string(),
        version: req.version.unwrap_or(1),
        headers,
        has_body: false,
    };
    request.has_body = body_framing(&request.headers)?;
    let bodyless = matches!(request.method.as_str(), "GET" | "HEAD" | "OPTIONS");
    if (request.has_body && bodyless) || !request.target.starts_with('/') && request.target != "*" {
        return Err(ParseError::Malformed);
    }
    Ok(Some((request, len)))
}

/// Whether the head announces a body, refusing every framing two parsers could read two ways: a
/// proxy that takes the first Content-Length and we the last (or the reverse) would disagree on
/// where the next request starts, which is how request smuggling works.
fn body_framing(headers: &[(String, String)]) -> Result<bool, ParseError> {
    let mut lengths = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("content-length"));
    let chunked = headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("transfer-encoding"));
    let length = match (lengths.next(), lengths.next()) {
        (None, _) => None,
        (Some((_, v)), None) => Some(content_length(v)?),
        (Some(_), Some(_)) => return Err(ParseError::AmbiguousFraming),
    };
    match (length, chunked) {
        (Some(_), true) => Err(ParseError::AmbiguousFraming),
        (Some(n), false) => Ok(n > 0),
        (None, chunked) => Ok(chunked),
    }
}

/// One Content-Length value: 1*DIGIT and nothing else (no sign, no list, no spaces inside).
fn content_length(v: &str) -> Result<u64, ParseError> {
    if v.is_empty() || v.len() > 19 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::AmbiguousFraming);
    }
    v.parse().map_err(|_| ParseError::AmbiguousFraming)
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// True when `name` holds `token` in its comma-separated list (case-insensitive).
    pub fn header_has_token(&self, name: &str, token: &str) -> bool {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    /// HTTP/1.1 keeps the connection unless `Connection: close`; 1.0 only with `keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.version == 0 {
            self.header_has_token("connection", "keep-alive")
        } else {
            !self.header_has_token("connection", "close")
        }
    }

    /// The target without its query.
    pub fn path(&self) -> &str {
        crate::media::key::split_query(&self.target).0
    }

    pub fn query(&self) -> Option<&str> {
        crate::media::key::split_query(&self.target).1
    }

    /// The request line as the access log shows it.
    /// The request line for the access log, with every `token`/`sign` value as `***`.
    pub fn request_line(&self) -> String {
        format!(
            "{} {} HTTP/1.{}",
            self.method,
            crate::codec::query::mask(&self.target),
            self.version
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_and_partial() {
        let raw = b"GET /live/s.flv?token=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, keep-alive\r\n\r\nrest";
        for cut in 0..raw.len() - 4 {
            assert_eq!(parse(&raw[..cut]).unwrap(), None, "cut {cut}");
        }
        let (r, n) = parse(raw).unwrap().unwrap();
        assert_eq!(n, raw.len() - 4);
        assert_eq!(
            (r.method.as_str(), r.path(), r.query()),
            ("GET", "/live/s.flv", Some("token=1"))
        );
        assert!(r.header_has_token("CONNECTION", "upgrade"));
        assert!(r.keep_alive());
    }

    #[test]
    fn http10_closes_by_default() {
        let (r, _) = parse(b"GET / HTTP/1.0\r\n\r\n").unwrap().unwrap();
        assert!(!r.keep_alive());
    }

    #[test]
    fn limits() {
        let mut big = b"GET / HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        assert_eq!(parse(&big), Err(ParseError::TooLarge));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend(format!("H{i}: v\r\n").as_bytes());
        }
        many.extend(b"\r\n");
        assert_eq!(parse(&many), Err(ParseError::TooLarge));
        assert_eq!(
            parse(b"\x16\x03\x01garbage\r\n\r\n"),
            Err(ParseError::Malformed)
        );
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"),
            Err(ParseError::Malformed)
        );
        // A method with a body parses (the server answers 405 and closes without reading it).
        let (post, _) = parse(b"POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(post.has_body);
    }

    /// Issue 13 hole 2: `Content-Length: 0` then `Content-Length: 46` was served, and the 46 body
    /// bytes were then read as a second request.
    #[test]
    fn duplicate_content_length_is_refused() {
        let refused: &[&str] = &[
            "Content-Length: 0\r\nContent-Length: 46",
            "Content-Length: 46\r\nContent-Length: 0",
            "Content-Length: 0\r\nContent-Length: 0",
            "Content-Length: 5\r\ncontent-length: 5",
            "Content-Length: 0, 46",
            "Content-Length: 0,0",
            "Content-Length: -1",
            "Content-Length: +0",
            "Content-Length: 0x10",
            "Content-Length: ",
            "Content-Length: 99999999999999999999",
            "Content-Length: 0\r\nTransfer-Encoding: chunked",
            "Transfer-Encoding: chunked\r\nContent-Length: 5",
        ];
        for method in ["GET", "POST", "HEAD"] {
            for headers in refused {
                let raw = format!(
                    "{method} / HTTP/1.1\r\nHost: x\r\n{headers}\r\n\r\nGET /x HTTP/1.1\r\n\r\n"
                );
                let r = parse(raw.as_bytes());
                assert_eq!(r, Err(ParseError::AmbiguousFraming), "{method} {headers:?}");
                assert_eq!(ParseError::AmbiguousFraming.status(), 400);
            }
        }
        // One honest value still parses; 0 is no body.
        let (r, _) = parse(b"GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(!r.has_body);
        let (r, _) = parse(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
            .unwrap()
            .unwrap();
        assert!(r.has_body);
        assert_eq!(
            parse(b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"),
            Err(ParseError::Malformed)
        );
    }
}
