//! SRT stream ids: the Access Control convention `#!::r=app/stream,m=publish` (`m=request` to
//! play, the default) and the short forms `publish:app/stream`, `play:app/stream` (also `read:`
//! and `request:`) and plain `app/stream` (play), each with an optional `?query`. Keys other than
//! `r`, `m`, `t` and `h` (`u=`, `token=`, `s=`, ...) become the query for the access policy.

use super::handshake::RejectReason;
use crate::media::key::valid_name;

/// What the caller wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Publish,
    Play,
}

/// A parsed stream id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamId {
    pub mode: Mode,
    pub app: String,
    pub stream: String,
    /// `key=value` pairs joined by `&`, in the order given (`u=`, `token=`, ...).
    pub query: String,
}

impl StreamId {
    /// Parses the stream id a caller sent (bytes, at most 512). Malformed ids map to the reject
    /// reason the handshake answers with.
    pub fn parse(raw: &[u8]) -> Result<StreamId, RejectReason> {
        let s = std::str::from_utf8(raw).map_err(|_| RejectReason::BadRequest)?;
        if s.bytes().any(|b| b.is_ascii_control()) {
            return Err(RejectReason::BadRequest);
        }
        match s.strip_prefix("#!::") {
            Some(kv) => parse_access_control(kv),
            None => parse_short(s),
        }
    }
}

fn parse_access_control(kv: &str) -> Result<StreamId, RejectReason> {
    let mut resource = None;
    let mut mode = Mode::Play;
    let mut query = Vec::new();
    for item in kv.split(',') {
        let (k, v) = item.split_once('=').ok_or(RejectReason::BadRequest)?;
        match k {
            "r" if resource.is_none() => resource = Some(v),
            "r" => return Err(RejectReason::BadRequest),
            "m" => mode = parse_mode(v)?,
            // Only live streams exist here: t=stream is the default, anything else is refused.
            "t" if v != "stream" => return Err(RejectReason::BadMode),
            "t" | "h" => {}
            _ if k.is_empty() => return Err(RejectReason::BadRequest),
            _ => query.push(item),
        }
    }
    let (app, stream, q) = split_resource(resource.ok_or(RejectReason::BadRequest)?)?;
    if let Some(q) = q {
        query.extend(q.split('&').filter(|p| !p.is_empty()));
    }
    Ok(StreamId {
        mode,
        app,
        stream,
        query: query.join("&"),
    })
}

fn parse_short(s: &str) -> Result<StreamId, RejectReason> {
    let (mode, rest) = match s.split_once(':') {
        Some((m, rest)) => (parse_mode(m)?, rest),
        None => (Mode::Play, s),
    };
    let (app, stream, q) = split_resource(rest)?;
    Ok(StreamId {
        mode,
        app,
        stream,
        query: q.unwrap_or("").to_string(),
    })
}

fn parse_mode(m: &str) -> Result<Mode, RejectReason> {
    match m {
        "publish" => Ok(Mode::Publish),
        "request" | "play" | "read" => Ok(Mode::Play),
        _ => Err(RejectReason::BadMode),
    }
}

/// `app/stream[?query]` with both names valid.
fn split_resource(r: &str) -> Result<(String, String, Option<&str>), RejectReason> {
    let (path, query) = match r.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (r, None),
    };
    let (app, stream) = path.split_once('/').ok_or(RejectReason::BadRequest)?;
    if !valid_name(app) || !valid_name(stream) {
        return Err(RejectReason::BadRequest);
    }
    Ok((app.to_string(), stream.to_string(), query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(raw: &str, mode: Mode, app: &str, stream: &str, query: &str) {
        let id = StreamId::parse(raw.as_bytes()).unwrap_or_else(|e| panic!("{raw}: {e}"));
        assert_eq!(
            id,
            StreamId {
                mode,
                app: app.into(),
                stream: stream.into(),
                query: query.into()
            },
            "{raw}"
        );
    }

    #[test]
    fn accepted_forms() {
        use Mode::*;
        ok("#!::r=live/s,m=publish", Publish, "live", "s", "");
        ok("#!::m=request,r=live/s", Play, "live", "s", "");
        ok("#!::r=live/s", Play, "live", "s", "");
        ok(
            "#!::r=live/cam-1,m=publish,u=alice,token=abc",
            Publish,
            "live",
            "cam-1",
            "u=alice&token=abc",
        );
        ok(
            "#!::r=live/s?token=x,m=publish",
            Publish,
            "live",
            "s",
            "token=x",
        );
        ok("#!::r=live/s,t=stream,h=example.com", Play, "live", "s", "");
        ok("publish:live/stream", Publish, "live", "stream", "");
        ok(
            "publish:live/stream?token=t1",
            Publish,
            "live",
            "stream",
            "token=t1",
        );
        ok("live/stream", Play, "live", "stream", "");
        ok("play:live/stream", Play, "live", "stream", "");
        ok("read:live/stream", Play, "live", "stream", "");
        ok("request:live/s?u=bob", Play, "live", "s", "u=bob");
    }

    #[test]
    fn rejected_forms_carry_their_reason() {
        use RejectReason::*;
        for (raw, why) in [
            ("", BadRequest),
            ("live", BadRequest),
            ("live/", BadRequest),
            ("/s", BadRequest),
            ("live/s/x", BadRequest),
            ("live/s p", BadRequest),
            ("#!::", BadRequest),
            ("#!::m=publish", BadRequest),
            ("#!::r=live/s,r=live/t", BadRequest),
            ("#!::r=live/s,junk", BadRequest),
            ("#!::r=live/s,=x", BadRequest),
            ("#!::r=live/s,m=bidirectional", BadMode),
            ("#!::r=live/s,t=file", BadMode),
            ("delete:live/s", BadMode),
            ("live/s\n", BadRequest),
        ] {
            assert_eq!(StreamId::parse(raw.as_bytes()), Err(why), "{raw:?}");
        }
        assert_eq!(StreamId::parse(b"live/\xff"), Err(BadRequest));
    }
}
