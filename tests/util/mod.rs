//! Helpers for the end-to-end tests: the server under test on port 0 (`server`), child processes
//! killed on drop (`proc`, FFmpeg wrappers), HTTP-FLV / WS-FLV / RTMP readers (`http`, `ws`,
//! `rtmp`), FLV parsing and the assertions every output shares (`flv`), ffprobe verdicts, playlists
//! and timed reads for the fault tests (`probe`), the fixture facts and the one temp-dir helper
//! (`TempDir`).
//! Nothing here knows the server's internals: it talks to the binary through sockets only.
#![allow(dead_code)]

pub mod chromium;
pub mod files;
pub mod flv;
pub mod http;
pub mod probe;
pub mod proc;
pub mod rtmp;
pub mod server;
pub mod tls;
pub mod whep;
pub mod ws;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

pub use chromium::*;
pub use files::*;
pub use flv::*;
pub use http::*;
pub use probe::*;
pub use proc::*;
pub use rtmp::*;
pub use server::*;
pub use tls::*;
pub use ws::*;

/// A fresh, empty folder under the system temp dir, unique within this test process (tag,
/// process id and a counter), removed on drop. The one temp-dir helper of the tests.
#[derive(Debug)]
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("rtmpd-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("creating {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }

    /// Writes `data` at `rel` (folders created) and returns the full path.
    pub fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        std::fs::write(&p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    /// Hands the folder over to an owner that removes it itself (the server helper).
    pub fn keep(self) -> PathBuf {
        let me = std::mem::ManuallyDrop::new(self);
        me.path.clone()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// `tests/data/NAME`.
pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

pub fn fixture_bytes(name: &str) -> Vec<u8> {
    let p = fixture_path(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The facts `tools/make-fixtures.sh` wrote to `tests/data/fixtures.txt` (`file.key=value`).
pub struct Facts(HashMap<String, String>);

impl Facts {
    pub fn get() -> &'static Facts {
        static FACTS: OnceLock<Facts> = OnceLock::new();
        FACTS.get_or_init(|| {
            let text = String::from_utf8(fixture_bytes("fixtures.txt")).expect("fixtures.txt");
            let map = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
                .collect();
            Facts(map)
        })
    }

    /// `fact("fixture.flv", "video_frames")`.
    pub fn str(&self, file: &str, key: &str) -> &str {
        self.0
            .get(&format!("{file}.{key}"))
            .unwrap_or_else(|| panic!("fixtures.txt has no {file}.{key}"))
    }

    pub fn num(&self, file: &str, key: &str) -> u64 {
        let s = self.str(file, key);
        s.parse()
            .unwrap_or_else(|_| panic!("fixtures.txt: {file}.{key}={s} is not a number"))
    }
}

/// The name of the running test (libtest names each test thread after its test).
pub fn test_name() -> String {
    std::thread::current()
        .name()
        .unwrap_or("unknown")
        .to_string()
}

/// Whether `tool` is on PATH. When it is not: prints "skipped: TOOL not found (test NAME)" and
/// returns false, or panics when RTMPD_REQUIRE_TOOLS=1 (CI, where skipping is forbidden).
pub fn require_tool(tool: &str) -> bool {
    let found = std::env::var_os("PATH")
        .map(|paths| {
            std::env::split_paths(&paths).any(|dir| {
                let p = dir.join(tool);
                std::fs::metadata(&p).map(|m| m.is_file()).unwrap_or(false)
            })
        })
        .unwrap_or(false);
    if found {
        return true;
    }
    let msg = format!("skipped: {tool} not found (test {})", test_name());
    if std::env::var("RTMPD_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{msg}, and RTMPD_REQUIRE_TOOLS=1 forbids skipping");
    }
    eprintln!("{msg}");
    false
}

/// A stream name unique within this test process (servers are per test, but a unique name makes
/// log lines easy to attribute).
pub fn unique_stream(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("{prefix}{}", N.fetch_add(1, Ordering::Relaxed))
}
