//! Response heads for the live endpoints and the API, and small complete responses for errors.
//! Every response carries `Access-Control-Allow-Origin: *` so players on any page may fetch it.

/// The reason phrase for the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        416 => "Range Not Satisfiable",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

fn connection(keep_alive: bool) -> &'static str {
    if keep_alive {
        "keep-alive"
    } else {
        "close"
    }
}

/// A whole response with a text body.
pub fn text(
    status: u16,
    content_type: &str,
    body: &str,
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nServer: rtmpd\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-cache\r\nAccess-Control-Allow-Origin: *\r\nConnection: {}\r\n\r\n",
        reason(status),
        body.len(),
        connection(keep_alive)
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    out
}

/// A plain-text error or status response.
pub fn simple(status: u16, body: &str, keep_alive: bool) -> Vec<u8> {
    text(status, "text/plain; charset=utf-8", body, keep_alive, false)
}

/// 204 answer to a CORS preflight.
pub fn options(keep_alive: bool) -> Vec<u8> {
    format!(
        "HTTP/1.1 204 No Content\r\nServer: rtmpd\r\nAccess-Control-Allow-Origin: *\r\n\
         Access-Control-Allow-Methods: GET, HEAD, DELETE, OPTIONS\r\nAccess-Control-Allow-Headers: *\r\n\
         Access-Control-Max-Age: 86400\r\nContent-Length: 0\r\nConnection: {}\r\n\r\n",
        connection(keep_alive)
    )
    .into_bytes()
}

/// The head of a live HTTP-FLV response: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
pub fn flv_head(chunked: bool) -> Vec<u8> {
    let framing = if chunked {
        "Transfer-Encoding: chunked\r\n"
    } else {
        ""
    };
    format!(
        "HTTP/1.1 200 OK\r\nServer: rtmpd\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache\r\n\
         Access-Control-Allow-Origin: *\r\n{framing}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// The end of a chunked body (the chunk coding lives in `codec::chunked`).
pub use crate::codec::chunked::LAST_CHUNK;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_has_cors_and_length() {
        let r = String::from_utf8(simple(404, "Stream not found.", true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Access-Control-Allow-Origin: *\r\n"));
        assert!(r.contains("Content-Length: 17\r\n"));
        assert!(r.ends_with("\r\n\r\nStream not found."));
    }

    #[test]
    fn flv_head_framing() {
        let h = String::from_utf8(flv_head(true)).unwrap();
        assert!(h.contains("Transfer-Encoding: chunked") && h.contains("video/x-flv"));
        assert!(!String::from_utf8(flv_head(false))
            .unwrap()
            .contains("chunked"));
    }
}
