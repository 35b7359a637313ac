//! `rtmpd merge DIR` and the recorder's end-of-stream merge: finds `init.mp4` and the
//! `segment_N.m4s` files of a folder and builds `stream_full.mp4` through `mux::mp4::Merger`,
//! written under a temporary name and renamed when whole. Temporary segments a crash left
//! behind (`*.tmp`) are never read.

use crate::mux::mp4::{parse_init, Merger};
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

/// An init segment is a few hundred bytes; anything much larger is not one of ours.
const MAX_INIT: u64 = 4 << 20;

/// What a merge did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeReport {
    /// The file written (`DIR/stream_full.mp4`).
    pub output: PathBuf,
    /// Segments read.
    pub segments: usize,
    /// Segments that were cut short (some or all of their samples missing).
    pub damaged_segments: usize,
    /// Samples in the output, all tracks.
    pub samples: u64,
    /// Samples announced by damaged segments but missing from them.
    pub dropped_samples: u64,
    pub duration_ms: u64,
    pub bytes: u64,
}

fn invalid(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// `segment_N.m4s` files of `dir`, by N.
pub fn segment_files(dir: &Path, prefix: &str) -> io::Result<Vec<(u32, PathBuf)>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(n) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('_'))
            .and_then(|r| r.strip_suffix(".m4s"))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        out.push((n, e.path()));
    }
    out.sort();
    Ok(out)
}

/// Builds `dir/stream_full.mp4` from `dir/init.mp4` and `dir/segment_N.m4s`. The same folder
/// always gives the same bytes.
pub fn merge_dir(dir: &Path) -> io::Result<MergeReport> {
    let init_path = dir.join("init.mp4");
    let init_file = File::open(&init_path)?;
    let mut init = Vec::new();
    init_file.take(MAX_INIT).read_to_end(&mut init)?;
    let tracks = parse_init(&init).map_err(|e| invalid(format!("{}: {e}", init_path.display())))?;
    if tracks.is_empty() {
        return Err(invalid(format!(
            "{}: no audio or video track",
            init_path.display()
        )));
    }
    let segments = segment_files(dir, "segment")?;
    if segments.is_empty() {
        return Err(invalid(format!(
            "{}: no segment_N.m4s files",
            dir.display()
        )));
    }
    let mut merger = Merger::new(tracks);
    let mut report = MergeReport {
        output: dir.join(super::fmp4::FULL_NAME),
        segments: segments.len(),
        damaged_segments: 0,
        samples: 0,
        dropped_samples: 0,
        duration_ms: 0,
        bytes: 0,
    };
    for (_, path) in &segments {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let scan = merger.add_segment(&mut f, len)?;
        report.samples += scan.samples;
        report.dropped_samples += scan.dropped;
        if scan.dropped > 0 || scan.samples == 0 {
            report.damaged_segments += 1;
        }
    }
    if report.samples == 0 {
        return Err(invalid(format!(
            "{}: no whole samples in any segment",
            dir.display()
        )));
    }
    report.duration_ms = merger.duration_ms();
    let tmp = dir.join(format!("{}.tmp", super::fmp4::FULL_NAME));
    let result = (|| {
        let mut out = BufWriter::with_capacity(1 << 20, File::create(&tmp)?);
        let n = merger.write(&mut out, |i| File::open(&segments[i as usize].1))?;
        out.flush()?;
        out.get_ref().sync_all()?;
        Ok::<u64, io::Error>(n)
    })();
    match result {
        Ok(n) => report.bytes = n,
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            return Err(e);
        }
    }
    fs::rename(&tmp, &report.output)?;
    Ok(report)
}
