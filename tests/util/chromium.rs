//! Headless Chromium on one test page: the page (HTML with its script) is written to a temporary
//! file and opened (from a file: its fetches to the server are cross-origin, so CORS is
//! exercised), and the test waits for the one console line the page logs when it is done
//! (`MARKER key=value ...`). Chromium must be on PATH (callers check with `require_tool`).

use std::process::Command;
use std::time::{Duration, Instant};

use super::{Proc, TempDir};

/// Opens `page` in headless Chromium (autoplay allowed, a fresh profile) and returns the first
/// console line containing `marker`, or panics with Chromium's output after `timeout`.
pub fn chromium_run_page(page: &str, marker: &str, timeout: Duration) -> String {
    let dir = TempDir::new("chromium-page");
    let file = dir.write("page.html", page.as_bytes());
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
    ])
    .arg(format!("--user-data-dir={}", dir.join("profile").display()))
    .args([
        "--autoplay-policy=no-user-gesture-required",
        "--enable-logging=stderr",
    ])
    .args(["--v=0", "--allow-file-access-from-files"])
    .arg(format!("file://{}", file.display()));
    let mut chrome = Proc::spawn(cmd);
    let end = Instant::now() + timeout;
    let line = loop {
        let err = chrome.stderr();
        if let Some(l) = err.lines().find(|l| l.contains(marker)) {
            break l.to_string();
        }
        assert!(Instant::now() < end, "no {marker} from Chromium:\n{err}");
        std::thread::sleep(Duration::from_millis(200));
    };
    chrome.kill();
    eprintln!("chromium: {line}");
    line
}

/// The number after `key` (e.g. `"decoded="`) in a page's result line; panics naming the line
/// when it has none.
pub fn page_field(line: &str, key: &str) -> u64 {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key))
        .and_then(|v| {
            v.trim_end_matches(|c: char| !c.is_ascii_digit())
                .parse()
                .ok()
        })
        .unwrap_or_else(|| panic!("no {key} in {line}"))
}
