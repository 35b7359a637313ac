//! The `--auth-file` table of per-stream tokens: parsing (`app/stream publish_token [play_token]`,
//! `*` as stream covers an app, `-` for "no token", `#` comments) with errors that name the line,
//! lookup, and the reload check the loop's timer calls (stat only; re-read on a change of mtime or
//! size; a bad file keeps the previous table). Comparing tokens is `policy`'s job.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::Secret;
use crate::media::key::valid_name;

/// Bigger files are refused: the table lives in memory and is re-read on every change.
pub const MAX_FILE_BYTES: u64 = 4 << 20;
/// Longer tokens are refused (they are compared on every publish and play).
pub const MAX_TOKEN_LEN: usize = 256;

/// The tokens of one `app/stream` (or `app/*`) line; `None` where the line gives `-` or nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub publish: Option<Secret>,
    pub play: Option<Secret>,
}

/// A fully valid auth file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Table {
    /// Keyed by (app, stream), stream `*` for a whole app.
    entries: HashMap<(String, String), Entry>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry for `app/stream`: an exact line wins over the app's `*` line.
    pub fn lookup(&self, app: &str, stream: &str) -> Option<&Entry> {
        self.entries
            .get(&(app.to_string(), stream.to_string()))
            .or_else(|| self.entries.get(&(app.to_string(), "*".to_string())))
    }

    /// Parses a whole file; the first bad line fails it all.
    pub fn parse(text: &str) -> Result<Table, ParseError> {
        let mut entries = HashMap::new();
        let mut first_line: HashMap<(String, String), usize> = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.split_once('#').map_or(line, |(l, _)| l).trim();
            if line.is_empty() {
                continue;
            }
            let bad = |reason: String| ParseError { line: n, reason };
            let mut cols = line.split_whitespace();
            let key = cols.next().unwrap_or_default();
            let Some((app, stream)) = key.split_once('/') else {
                return Err(bad(format!("'{key}' is not app/stream")));
            };
            if !valid_name(app) || !(stream == "*" || valid_name(stream)) {
                return Err(bad(format!(
                    "'{key}': app and stream must match [A-Za-z0-9_-]{{1,64}} (stream may be *)"
                )));
            }
            let publish = cols
                .next()
                .ok_or_else(|| bad("no publish token (write - for none)".into()))?;
            let play = cols.next();
            if cols.next().is_some() {
                return Err(bad(
                    "more than two tokens (app/stream publish_token [play_token])".into(),
                ));
            }
            let token = |t: &str| -> Result<Option<Secret>, ParseError> {
                if t == "-" {
                    Ok(None)
                } else if t.len() > MAX_TOKEN_LEN {
                    Err(bad(format!("a token is longer than {MAX_TOKEN_LEN} bytes")))
                } else {
                    Ok(Some(Secret::new(t)))
                }
            };
            let entry = Entry {
                publish: token(publish)?,
                play: play.map(token).transpose()?.flatten(),
            };
            let k = (app.to_string(), stream.to_string());
            if let Some(first) = first_line.get(&k) {
                return Err(bad(format!("'{key}' again (first on line {first})")));
            }
            first_line.insert(k.clone(), n);
            entries.insert(k, entry);
        }
        Ok(Table { entries })
    }
}

/// A bad line of an auth file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    /// Names the fault, never a token.
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

/// Why a (re)load did not produce a table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LoadError {
    /// The file cannot be read (missing, permissions, too big, not UTF-8).
    Unreadable(String),
    Parse(ParseError),
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoadError::Unreadable(r) => f.write_str(r),
            LoadError::Parse(e) => e.fmt(f),
        }
    }
}

/// Reads and parses `path` (bounded by `MAX_FILE_BYTES`).
pub fn load(path: &Path) -> Result<Table, LoadError> {
    let unreadable = |e: String| LoadError::Unreadable(format!("{}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(|e| unreadable(e.to_string()))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(unreadable(format!("bigger than {MAX_FILE_BYTES} bytes")));
    }
    let bytes = std::fs::read(path).map_err(|e| unreadable(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| unreadable("not UTF-8 text".into()))?;
    Table::parse(&text).map_err(LoadError::Parse)
}

/// What a reload check did, for one log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReloadOutcome {
    Loaded(usize),
    /// The file changed but is bad: the previous table (of this many entries) stays.
    Kept {
        error: LoadError,
        entries: usize,
    },
}

impl ReloadOutcome {
    /// True when the line belongs at error level.
    pub fn is_error(&self) -> bool {
        matches!(self, ReloadOutcome::Kept { .. })
    }
}

impl fmt::Display for ReloadOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadOutcome::Loaded(n) => write!(f, "auth file: loaded {n} entries"),
            ReloadOutcome::Kept { error, entries } => write!(
                f,
                "auth file: {error}, keeping the previous table ({entries} entries)"
            ),
        }
    }
}

/// What the file looked like when last read (or last found bad), to re-read only on a change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    mtime: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        mtime: m.modified().ok(),
        len: m.len(),
    })
}

/// The auth file and its current table.
#[derive(Debug)]
pub struct AuthFile {
    path: PathBuf,
    table: Table,
    /// `None` when the file could not be stat'ed at the last check (so its return is a change).
    seen: Option<Stamp>,
}

impl AuthFile {
    /// Loads the file; at startup a bad file is an error (the binary exits 2).
    pub fn open(path: &Path) -> Result<AuthFile, LoadError> {
        let seen = stamp(path);
        let table = load(path)?;
        Ok(AuthFile {
            path: path.to_path_buf(),
            table,
            seen,
        })
    }

    pub fn table(&self) -> &Table {
        &self.table
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The loop's timer calls this (about once a second): one `stat`, and a read only when mtime
    /// or size changed. `None` when nothing changed; each change is reported once.
    pub fn check(&mut self) -> Option<ReloadOutcome> {
        let now = stamp(&self.path);
        if now == self.seen {
            return None;
        }
        self.seen = now;
        Some(match load(&self.path) {
            Ok(table) => {
                self.table = table;
                ReloadOutcome::Loaded(self.table.len())
            }
            Err(error) => ReloadOutcome::Kept {
                error,
                entries: self.table.len(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_lookup() {
        let t = Table::parse(
            "# comment\n\
             live/cam  pub1 play1   # trailing comment\n\
             \n\
             live/*    pubA\n\
             tv/news   -    watch\n",
        )
        .unwrap();
        assert_eq!(t.len(), 3);
        let e = t.lookup("live", "cam").unwrap();
        assert_eq!(e.publish.as_ref().unwrap().as_str(), "pub1");
        assert_eq!(e.play.as_ref().unwrap().as_str(), "play1");
        let star = t.lookup("live", "other").unwrap();
        assert_eq!(star.publish.as_ref().unwrap().as_str(), "pubA");
        assert_eq!(star.play, None);
        assert_eq!(t.lookup("tv", "news").unwrap().publish, None);
        assert!(t.lookup("tv", "other").is_none());
        assert!(t.lookup("radio", "cam").is_none());
        assert!(Table::parse("").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let long = format!("live/a {}", "x".repeat(MAX_TOKEN_LEN + 1));
        for (text, line, words) in [
            ("live/cam t\nnoslash t\n", 2, "not app/stream"),
            ("\n\nlive/ca.m t\n", 3, "must match"),
            ("live/* t\n*/cam t\n", 2, "must match"),
            ("live/cam\n", 1, "no publish token"),
            ("live/cam a b c\n", 1, "more than two"),
            ("live/cam a\n# x\nlive/cam b\n", 3, "first on line 1"),
            (long.as_str(), 1, "longer than"),
        ] {
            let e = Table::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text}");
            assert!(e.to_string().contains(words), "{e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")));
        }
        // The reason never repeats a token.
        let e = Table::parse("live/cam s3cret x y\n").unwrap_err();
        assert!(!e.to_string().contains("s3cret"));
    }

    #[test]
    fn reload_keeps_the_old_table_on_error() {
        let dir = std::env::temp_dir().join(format!("rtmpd-authfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("auth.txt");
        std::fs::write(&path, "live/cam t1\n").unwrap();
        let mut f = AuthFile::open(&path).unwrap();
        assert_eq!(f.check(), None, "unchanged: no read, no line");

        // A change of size is seen even within the same mtime second.
        std::fs::write(&path, "live/cam t1\nlive/b t2 p2\n").unwrap();
        assert_eq!(f.check(), Some(ReloadOutcome::Loaded(2)));
        assert_eq!(f.check(), None);

        std::fs::write(&path, "live/cam t1\nlive/b t2 p2\nbroken line here\n").unwrap();
        let out = f.check().unwrap();
        assert!(out.is_error());
        assert_eq!(
            out.to_string(),
            "auth file: line 3: 'broken' is not app/stream, keeping the previous table (2 entries)"
        );
        assert_eq!(f.table().len(), 2);
        assert!(f.table().lookup("live", "b").is_some());
        assert_eq!(f.check(), None, "a bad file is reported once");

        std::fs::remove_file(&path).unwrap();
        let out = f.check().unwrap();
        assert!(matches!(
            out,
            ReloadOutcome::Kept {
                error: LoadError::Unreadable(_),
                entries: 2
            }
        ));
        assert_eq!(f.check(), None);

        std::fs::write(&path, "live/x y\n").unwrap();
        assert_eq!(f.check(), Some(ReloadOutcome::Loaded(1)));
        assert!(f.table().lookup("live", "b").is_none());

        assert!(matches!(
            AuthFile::open(&dir.join("missing")),
            Err(LoadError::Unreadable(_))
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
