//! Query strings of publish/play requests: splitting a raw stream name, connect app, tcUrl or HTTP
//! target into (name, query) so the query never becomes part of a name, parsing `a=b&c=d` with
//! caps, and masking `token`/`sign` values for logs. No policy here: what a parameter means is
//! decided in `policy`.

use std::borrow::Cow;

/// Parameters kept from all the places of one request; more are ignored, so a hostile query
/// costs bounded work and memory.
pub const MAX_PARAMS: usize = 32;

/// The parameters whose values are credentials: never logged, never shown.
pub const SECRET_PARAMS: [&str; 2] = ["token", "sign"];

/// Splits `name?query` at the first `?`: the name, and the query without `?` ("" when absent).
pub fn split(raw: &str) -> (&str, &str) {
    raw.split_once('?').unwrap_or((raw, ""))
}

/// A raw RTMP stream name (`cam?token=T`, what OBS users type as the stream key) -> name, query.
pub fn split_stream(raw: &str) -> (&str, &str) {
    split(raw)
}

/// A connect `app` (`live?token=T`, or `live/?token=T` from some encoders) -> app, query.
pub fn split_app(raw: &str) -> (&str, &str) {
    let (app, q) = split(raw);
    (app.trim_end_matches('/'), q)
}

/// A tcUrl (`rtmp://host:1935/live?token=T`) -> the URL without its query, query.
pub fn split_tc_url(raw: &str) -> (&str, &str) {
    split(raw)
}

/// An HTTP request target (`/live/cam.flv?token=T`) -> path, query. A `#fragment` is dropped
/// (browsers never send one, but it must not become part of a token).
pub fn split_target(raw: &str) -> (&str, &str) {
    let raw = raw.split_once('#').map_or(raw, |(t, _)| t);
    split(raw)
}

/// The parsed parameters of a request, in the order they were found, duplicates removed.
/// `Debug` shows credential values as `***`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Query {
    params: Vec<(String, String)>,
}

impl std::fmt::Debug for Query {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.masked()).finish()
    }
}

impl Query {
    /// Parses `a=b&c=d` (without `?`). A key without `=` gets an empty value; `%XX` escapes are
    /// decoded (an invalid escape stays as written); `+` stays `+`, since stream keys typed into
    /// an encoder are not form-encoded and base64 tokens contain it.
    pub fn parse(query: &str) -> Query {
        let mut q = Query::default();
        q.add(query);
        q
    }

    /// Adds the parameters of another query string (the same request's other places).
    pub fn add(&mut self, query: &str) {
        for kv in query.split('&').filter(|kv| !kv.is_empty()) {
            if self.params.len() >= MAX_PARAMS {
                return;
            }
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            let pair = (percent_decode(k), percent_decode(v));
            // The tcUrl usually repeats the app's query; one copy is enough.
            if !self.params.contains(&pair) {
                self.params.push(pair);
            }
        }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.params
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.params.is_empty()
    }

    /// The parameters with credential values replaced by `***`, for logs and hook bodies.
    pub fn masked(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter()
            .map(|(k, v)| (k, if is_secret(k) { "***" } else { v }))
    }
}

fn is_secret(key: &str) -> bool {
    SECRET_PARAMS.iter().any(|s| key.eq_ignore_ascii_case(s))
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Decodes `%XX`; invalid escapes and bytes that would not form UTF-8 are kept as written.
fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_string();
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8(out).unwrap_or_else(|_| s.to_string())
}

/// Renders a query string (`a=b&token=T`) with every `token`/`sign` value as `***`.
pub fn mask_query(query: &str) -> String {
    query
        .split('&')
        .map(|kv| match kv.split_once('=') {
            Some((k, _)) if is_secret(&percent_decode(k)) => format!("{k}=***"),
            _ => kv.to_string(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Renders anything that may carry a query (a URL, `name?query`, an HTTP target) for logs, with
/// every `token`/`sign` value as `***`; text without `?` is returned as it is.
pub fn mask(s: &str) -> Cow<'_, str> {
    match s.split_once('?') {
        None => Cow::Borrowed(s),
        Some((head, q)) => {
            let (q, frag) = match q.split_once('#') {
                Some((q, f)) => (q, Some(f)),
                None => (q, None),
            };
            let mut out = format!("{head}?{}", mask_query(q));
            if let Some(f) = frag {
                out.push('#');
                out.push_str(f);
            }
            Cow::Owned(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_keep_the_query_out_of_names() {
        for (raw, name, q) in [
            ("cam", "cam", ""),
            ("cam?token=T", "cam", "token=T"),
            ("cam?", "cam", ""),
            ("cam?token=a?b", "cam", "token=a?b"),
            ("?token=T", "", "token=T"),
        ] {
            assert_eq!(split_stream(raw), (name, q), "{raw}");
        }
        assert_eq!(split_app("live?token=T"), ("live", "token=T"));
        assert_eq!(split_app("live/?token=T"), ("live", "token=T"));
        assert_eq!(
            split_tc_url("rtmp://h:1935/live?token=T"),
            ("rtmp://h:1935/live", "token=T")
        );
        assert_eq!(
            split_target("/live/cam.flv?token=T#x"),
            ("/live/cam.flv", "token=T")
        );
    }

    #[test]
    fn parse_decodes_caps_and_dedupes() {
        let mut q = Query::parse("token=a%2Bb&x&sign=AB&token=c+d&bad=%zz&end=%4");
        assert_eq!(q.all("token").collect::<Vec<_>>(), ["a+b", "c+d"]);
        assert_eq!(q.get("x"), Some(""));
        assert_eq!(q.get("bad"), Some("%zz"));
        assert_eq!(q.get("end"), Some("%4"));
        q.add("token=a%2Bb");
        assert_eq!(q.all("token").count(), 2, "a repeated place adds nothing");
        let long = (0..1000).map(|i| format!("k{i}=v")).collect::<Vec<_>>();
        assert_eq!(Query::parse(&long.join("&")).iter().count(), MAX_PARAMS);
        // A decoded byte sequence that is not UTF-8 keeps the raw text.
        assert_eq!(Query::parse("k=%ff").get("k"), Some("%ff"));
    }

    #[test]
    fn masking_hides_every_credential() {
        for (raw, shown) in [
            ("rtmp://h/live?token=s3cret", "rtmp://h/live?token=***"),
            (
                "/live/cam.flv?expires=9&sign=abcd&x=1",
                "/live/cam.flv?expires=9&sign=***&x=1",
            ),
            ("cam?TOKEN=s3cret&token=&a", "cam?TOKEN=***&token=***&a"),
            ("cam?%74oken=s3cret", "cam?%74oken=***"),
            ("cam?token=s3cret#frag", "cam?token=***#frag"),
            ("no-query", "no-query"),
        ] {
            assert_eq!(mask(raw), shown, "{raw}");
        }
        let q = Query::parse("token=s3cret&sign=ff&a=b");
        let m: Vec<_> = q.masked().collect();
        assert_eq!(m, [("token", "***"), ("sign", "***"), ("a", "b")]);
    }
}
