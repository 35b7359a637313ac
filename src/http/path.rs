//! Request-target cleaning for the static file server: one percent-decode, every traversal spelling
//! refused (`Refusal`), the segments to look up, and percent-encoding for links. Strings only: what
//! exists on disk is `server::fs`'s business.

use std::fmt;
use std::fmt::Write as _;

/// Longest decoded path accepted; real paths here are well under 200 bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Why a path was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not origin-form (`/...`) or absolute-form, control characters, or longer than 4096 bytes. 400.
    BadTarget,
    /// A '%' not followed by two hex digits, or the decoded bytes are not UTF-8. 400.
    BadEncoding,
    /// A NUL byte, raw or encoded. 403.
    Nul,
    /// A `..` segment (after one decode). 403.
    DotDot,
    /// A backslash, raw or encoded. 403.
    Backslash,
    /// `%2e`, `%2f`, `%5c` or `%00` left after one decode: double encoding. 403.
    DoubleEncoded,
    /// Starts with `//` after decoding, or a drive letter (`C:`). 403.
    Absolute,
    /// Resolves (through symlinks) outside the root. 403.
    OutsideRoot,
    /// Exists but cannot be read, or is not a regular file or folder (a FIFO, a device). 403.
    Unreadable,
    /// A folder without index.html while listings are off. 403.
    NoIndex,
    /// Nothing at that path in any root. 404.
    NotFound,
    /// A method other than GET, HEAD, OPTIONS. 405.
    Method,
}

impl Refusal {
    pub fn status(self) -> u16 {
        match self {
            Refusal::BadTarget | Refusal::BadEncoding => 400,
            Refusal::NotFound => 404,
            Refusal::Method => 405,
            _ => 403,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::BadTarget => "malformed request target",
            Refusal::BadEncoding => "invalid percent-encoding",
            Refusal::Nul => "NUL byte in path",
            Refusal::DotDot => "'..' segment in path",
            Refusal::Backslash => "backslash in path",
            Refusal::DoubleEncoded => "double-encoded path",
            Refusal::Absolute => "absolute path or drive letter",
            Refusal::OutsideRoot => "path resolves outside the root",
            Refusal::Unreadable => "not a readable regular file",
            Refusal::NoIndex => "folder without index.html and listing off",
            Refusal::NotFound => "not found",
            Refusal::Method => "method not allowed",
        })
    }
}

/// A request path after one percent-decode and the traversal checks: the segments to look up, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanPath {
    pub segments: Vec<String>,
    /// The target ended with '/': a folder was asked for.
    pub trailing_slash: bool,
}

impl CleanPath {
    /// The path joined with '/', no leading slash ("" for the top).
    pub fn joined(&self) -> String {
        self.segments.join("/")
    }

    /// The canonical URL path, re-encoded, with a leading slash and the trailing slash when `dir`.
    pub fn url(&self, dir: bool) -> String {
        let mut s = String::from("/");
        for (i, seg) in self.segments.iter().enumerate() {
            if i > 0 {
                s.push('/');
            }
            s.push_str(&percent_encode(seg));
        }
        if dir && !self.segments.is_empty() {
            s.push('/');
        }
        s
    }
}

/// Decodes the path of `target` exactly once and refuses every way of leaving the root; see `Refusal`.
/// The query and fragment are dropped; absolute-form (`http://host/path`) is accepted.
pub fn clean_target(target: &str) -> Result<CleanPath, Refusal> {
    if target.bytes().any(|b| b == 0) {
        return Err(Refusal::Nul);
    }
    if target.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err(Refusal::BadTarget);
    }
    let path = path_of(target).ok_or(Refusal::BadTarget)?;
    if path.len() > MAX_PATH_LEN {
        return Err(Refusal::BadTarget);
    }
    let decoded = percent_decode(path)?;
    if decoded.contains(&0) {
        return Err(Refusal::Nul);
    }
    let decoded = String::from_utf8(decoded).map_err(|_| Refusal::BadEncoding)?;
    if decoded.contains('\\') {
        return Err(Refusal::Backslash);
    }
    let lower = decoded.to_ascii_lowercase();
    // One decode is all we do; what is still encoded would only matter to something decoding again (a proxy,
    // a careless script), so refuse it rather than serve a file whose name looks like a traversal.
    if ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|e| lower.contains(e))
    {
        return Err(Refusal::DoubleEncoded);
    }
    if decoded.starts_with("//") {
        return Err(Refusal::Absolute);
    }
    let mut segments = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => continue,
            ".." => return Err(Refusal::DotDot),
            _ => {}
        }
        // On Windows a ':' anywhere names a drive (`x/C:` would make PathBuf::push drop the root) or an
        // alternate data stream (`a.mp4::$DATA`); no file we serve has one.
        if (segments.is_empty() && is_drive_letter(seg)) || (cfg!(windows) && seg.contains(':')) {
            return Err(Refusal::Absolute);
        }
        segments.push(seg.to_string());
    }
    let clean = CleanPath {
        segments,
        trailing_slash: decoded.ends_with('/'),
    };
    // What is accepted has a canonical URL (a folder's redirect, a listing's links) that is
    // accepted too: re-encoding can triple a path (`|` is `%7C`), so that length is checked.
    if clean.url(true).len() > MAX_PATH_LEN {
        return Err(Refusal::BadTarget);
    }
    Ok(clean)
}

/// The path part of an origin-form or absolute-form target, without query or fragment.
fn path_of(target: &str) -> Option<&str> {
    let end = target.find(['?', '#']).unwrap_or(target.len());
    let target = &target[..end];
    if target.starts_with('/') {
        return Some(target);
    }
    let lower = target.get(..8).unwrap_or(target).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &target[7..]
    } else if lower.starts_with("https://") {
        &target[8..]
    } else {
        return None;
    };
    Some(rest.find('/').map_or("/", |i| &rest[i..]))
}

fn is_drive_letter(seg: &str) -> bool {
    let b = seg.as_bytes();
    b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':'
}

fn percent_decode(s: &str) -> Result<Vec<u8>, Refusal> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hi = b
                .get(i + 1)
                .and_then(|c| hex_val(*c))
                .ok_or(Refusal::BadEncoding)?;
            let lo = b
                .get(i + 2)
                .and_then(|c| hex_val(*c))
                .ok_or(Refusal::BadEncoding)?;
            out.push(hi << 4 | lo);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    Ok(out)
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Percent-encodes everything but unreserved characters and a few safe sub-delims, for Location and hrefs.
/// ':' is encoded so a file named `javascript:x` cannot become a scheme in a relative link.
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if c.is_ascii_alphanumeric() || b"-._~!$'()*+,;=@".contains(&c) {
            out.push(c as char);
        } else {
            let _ = write!(out, "%{c:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_paths_and_urls() {
        let c = clean_target("/a/./b//c%20d/?q=1").unwrap();
        assert_eq!(c.segments, ["a", "b", "c d"]);
        assert!(c.trailing_slash);
        assert_eq!(c.joined(), "a/b/c d");
        assert_eq!(c.url(true), "/a/b/c%20d/");
        assert_eq!(c.url(false), "/a/b/c%20d");
        assert_eq!(clean_target("/").unwrap().url(true), "/");
        assert_eq!(percent_encode("javascript:x<&>"), "javascript%3Ax%3C%26%3E");
        assert_eq!(clean_target("/%2e%2e/x"), Err(Refusal::DotDot));
        assert_eq!(clean_target("/%252e"), Err(Refusal::DoubleEncoded));
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN + 1));
        assert_eq!(clean_target(&long), Err(Refusal::BadTarget));
        // Short enough as sent, too long once re-encoded: refused, so every accepted path's
        // canonical URL is accepted as well (the http_request fuzz target's find, crash-ba4f6abc).
        let pipes = format!("/{}", "|".repeat(MAX_PATH_LEN / 2));
        assert_eq!(clean_target(&pipes), Err(Refusal::BadTarget));
        let input = include_bytes!(
            "../../fuzz/regressions/http_request/crash-ba4f6abc245406b35123bc5ffab74c0da6865ff1"
        );
        let target = std::str::from_utf8(input)
            .unwrap()
            .split(' ')
            .nth(1)
            .unwrap();
        if let Ok(clean) = clean_target(target) {
            let url = clean.url(clean.trailing_slash);
            assert_eq!(clean_target(&url).map(|c| c.segments), Ok(clean.segments));
        }
        assert_eq!(Refusal::NotFound.status(), 404);
        assert_eq!(Refusal::BadEncoding.status(), 400);
        assert_eq!(Refusal::Method.status(), 405);
        assert_eq!(Refusal::OutsideRoot.status(), 403);
    }
}
