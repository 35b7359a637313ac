//! Test-only helpers shared by the library's unit tests: temporary folders and a seeded byte
//! generator for hostile-input tests. Nothing here is compiled into the binary; protocol
//! fixtures stay with the tests that use them.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty folder under the system temp dir, unique within this process (tag, process
/// id and a counter: tests run in parallel threads), removed on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
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

    /// Writes `data` at `rel` (folders created) and returns the full path.
    pub fn write(&self, rel: &str, data: &[u8]) -> PathBuf {
        let p = self.path.join(rel);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).unwrap_or_else(|e| panic!("{}: {e}", d.display()));
        }
        std::fs::write(&p, data).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        p
    }

    /// Keeps the folder after the test (for tests that hand the path on) and returns it.
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

/// A fresh, empty folder that outlives the test (it is where a failed test's files are left
/// to look at); a later run with the same tag starts it empty again.
pub fn temp_dir(tag: &str) -> PathBuf {
    TempDir::new(tag).keep()
}

/// A seeded xorshift64 generator: reproducible garbage for hostile-input tests.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `input` with a few bytes overwritten, inserted or dropped, and cut at a random length.
    pub fn mutate(&mut self, input: &[u8]) -> Vec<u8> {
        let mut v = input.to_vec();
        for _ in 0..1 + self.below(4) {
            let at = self.below(v.len() + 1);
            let byte = self.next_u64() as u8;
            match self.below(3) {
                0 if at < v.len() => v[at] = byte,
                1 => v.insert(at, byte),
                _ if at < v.len() => {
                    v.remove(at);
                }
                _ => {}
            }
        }
        let keep = self.below(v.len() + 1);
        v.truncate(keep.max(v.len() / 2));
        v
    }
}

/// The FFmpeg 9 binary for the Enhanced-codec checks: `$RTMPD_FFMPEG9`, else the one
/// tools/fetch-ffmpeg.sh puts in tools/ffmpeg9/.
pub fn ffmpeg9() -> PathBuf {
    std::env::var_os("RTMPD_FFMPEG9")
        .map(Into::into)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/tools/ffmpeg9/ffmpeg").into())
}

/// One second of stereo E-AC-3 (raw sync frames), encoded by FFmpeg 9: no FLV fixture carries it.
pub fn eac3_from_ffmpeg9() -> Vec<u8> {
    let dir = TempDir::new("eac3");
    let raw = dir.path().join("a.eac3");
    let st = std::process::Command::new(ffmpeg9())
        .args([
            "-hide_banner",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "sine=d=1",
        ])
        .args(["-ac", "2", "-c:a", "eac3", "-b:a", "96k", "-f", "eac3"])
        .arg(&raw)
        .status()
        .expect("FFmpeg 9");
    assert!(st.success(), "FFmpeg 9 could not encode E-AC-3");
    std::fs::read(&raw).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_are_fresh_unique_and_removed_on_drop() {
        let a = TempDir::new("t");
        let b = TempDir::new("t");
        assert_ne!(a.path(), b.path());
        let f = a.write("x/y.txt", b"hi");
        assert_eq!(std::fs::read(&f).unwrap(), b"hi");
        let kept = temp_dir("t");
        assert!(kept.is_dir() && std::fs::read_dir(&kept).unwrap().next().is_none());
        let gone = a.path().to_path_buf();
        drop(a);
        assert!(!gone.exists());
        std::fs::remove_dir_all(kept).unwrap();
    }
}
