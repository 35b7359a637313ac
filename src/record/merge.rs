//! `rtmpd merge DIR` and the recorder's end-of-stream merge: finds `init.mp4` and the
//! `segment_N.m4s` files of a folder and builds `stream_full.mp4` through `mux::mp4::Merger`,
//! written under a temporary name and renamed when whole. Temporary segments a crash left
//! behind (`*.tmp`) are never read.

use super::paths::{FULL_NAME, INIT_NAME, MERGE_DIR, MUXED_PREFIX};
use crate::mux::mp4::{parse_init, Damage, Merger};
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
    /// Segments that were cut short or unusable (some or all of their samples missing), in
    /// order, each with what was wrong.
    pub damaged: Vec<DamagedSegment>,
    /// Samples in the output, all tracks.
    pub samples: u64,
    /// Samples announced by damaged segments but missing from them.
    pub dropped_samples: u64,
    pub duration_ms: u64,
    pub bytes: u64,
}

/// One damaged segment: which, what was wrong, and what the merge kept of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DamagedSegment {
    pub path: PathBuf,
    pub damage: Damage,
    /// Whole samples kept.
    pub kept: u64,
    /// Samples announced but missing.
    pub dropped: u64,
}

/// The warning line: `DIR/segment_3.m4s: damaged segment (cut short: ...): 12 samples kept, 13 dropped`.
impl std::fmt::Display for DamagedSegment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: damaged segment ({}): {} samples kept, {} dropped",
            self.path.display(),
            self.damage,
            self.kept,
            self.dropped
        )
    }
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

impl std::fmt::Display for MergeReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} segments, {} samples, {} ms, {} bytes",
            self.output.display(),
            self.segments,
            self.samples,
            self.duration_ms,
            self.bytes
        )?;
        if !self.damaged.is_empty() {
            let names: Vec<_> = self
                .damaged
                .iter()
                .map(|d| d.path.file_name().unwrap_or_default().to_string_lossy())
                .collect();
            write!(
                f,
                "; {} damaged segment{} ({}), {} samples dropped",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                self.dropped_samples
            )?;
        }
        Ok(())
    }
}

/// Builds `dir/stream_full.mp4` from `dir/init.mp4` and `dir/segment_N.m4s`. `dir` may also be
/// the stream folder above `output_merge/`. The same folder always gives the same bytes. Each
/// damaged segment is logged as a warning as it is met (the server's log) and listed in the
/// report (`rtmpd merge`, which has no logger, prints them to stderr).
pub fn merge_dir(dir: &Path) -> io::Result<MergeReport> {
    let nested = dir.join(MERGE_DIR);
    let dir = if !dir.join(INIT_NAME).exists() && nested.join(INIT_NAME).exists() {
        nested.as_path()
    } else {
        dir
    };
    let init_path = dir.join(INIT_NAME);
    let init_file = File::open(&init_path).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!(
                "{}: no {INIT_NAME} ({e}): not an fMP4 recording folder (it holds {INIT_NAME} and segment_N.m4s)",
                dir.display()
            ),
        )
    })?;
    let mut init = Vec::new();
    init_file.take(MAX_INIT).read_to_end(&mut init)?;
    let tracks = parse_init(&init).map_err(|e| invalid(format!("{}: {e}", init_path.display())))?;
    if tracks.is_empty() {
        return Err(invalid(format!(
            "{}: no audio or video track",
            init_path.display()
        )));
    }
    let segments = segment_files(dir, MUXED_PREFIX)?;
    if segments.is_empty() {
        return Err(invalid(format!(
            "{}: no segment_N.m4s files",
            dir.display()
        )));
    }
    let mut merger = Merger::new(tracks);
    let mut report = MergeReport {
        output: dir.join(FULL_NAME),
        segments: segments.len(),
        damaged: Vec::new(),
        samples: 0,
        dropped_samples: 0,
        duration_ms: 0,
        bytes: 0,
    };
    for (_, path) in &segments {
        // An I/O error fails the merge (pass 2 would read the file again), naming the file.
        let named = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let mut f = File::open(path).map_err(named)?;
        let len = f.metadata().map_err(named)?.len();
        let scan = merger.add_segment(&mut f, len).map_err(named)?;
        report.samples += scan.samples;
        report.dropped_samples += scan.dropped;
        if let Some(damage) = scan.damage() {
            // A segment cut short or corrupt: its whole samples are kept, the merge goes on.
            let d = DamagedSegment {
                path: path.clone(),
                damage,
                kept: scan.samples,
                dropped: scan.dropped,
            };
            log::warn!("merge: {d}");
            report.damaged.push(d);
        }
    }
    if report.samples == 0 {
        return Err(invalid(format!(
            "{}: no whole samples in any segment",
            dir.display()
        )));
    }
    report.duration_ms = merger.duration_ms();
    let tmp = dir.join(format!("{}.tmp", FULL_NAME));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_without_segments_says_what_is_missing() {
        let dir = crate::testutil::TempDir::new("merge-empty");
        let e = merge_dir(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("no init.mp4") && e.contains("not an fMP4 recording folder"),
            "{e}"
        );
        assert!(e.contains(&dir.path().display().to_string()), "{e}");
    }
    use crate::mux::fmp4::{
        init_segment, media_segment, Run, Sample, VideoConfig, SAMPLE_NON_SYNC, SAMPLE_SYNC,
    };
    use bytes::Bytes;

    fn folder(name: &str) -> PathBuf {
        let root = crate::record::testutil::temp_dir(name);
        let dir = root.join(crate::record::paths::MERGE_DIR);
        fs::create_dir_all(&dir).unwrap();
        let v = VideoConfig {
            avcc: Bytes::from_static(&[1, 0x42, 0, 0x1e, 0xff, 0xe0, 0]),
            width: 16,
            height: 16,
        };
        fs::write(dir.join("init.mp4"), init_segment(Some(&v), None)).unwrap();
        for seq in 1..=10u32 {
            let samples: Vec<Sample> = (0..25)
                .map(|i| Sample {
                    duration: 3600,
                    size: 100,
                    flags: if i == 0 { SAMPLE_SYNC } else { SAMPLE_NON_SYNC },
                    cto: 0,
                })
                .collect();
            let run = Run {
                track_id: 1,
                timescale: 90_000,
                decode_time: (seq as u64 - 1) * 25 * 3600,
                data: vec![Bytes::from(vec![seq as u8; 100]); 25],
                samples,
            };
            fs::write(
                dir.join(format!("segment_{seq}.m4s")),
                media_segment(seq, &[&run]),
            )
            .unwrap();
        }
        root
    }

    #[test]
    fn merges_numerically_from_the_stream_folder_too() {
        let root = folder("merge-order");
        let report = merge_dir(&root).unwrap();
        assert_eq!(report.segments, 10);
        assert_eq!(report.samples, 250);
        assert_eq!(report.duration_ms, 10_000);
        assert!(report.damaged.is_empty());
        let out = fs::read(&report.output).unwrap();
        assert_eq!(out.len() as u64, report.bytes);
        // segment_10 comes after segment_9: the last payload bytes are 10s.
        assert_eq!(out[out.len() - 1], 10);
        assert_eq!(out[out.len() - 2500], 10);
        assert_eq!(out[out.len() - 2501], 9);
        assert!(report
            .to_string()
            .contains("10 segments, 250 samples, 10000 ms"));
        let _ = fs::remove_dir_all(&root);
    }

    #[test]
    fn a_folder_without_segments_is_an_error_and_writes_nothing() {
        let root = folder("merge-empty");
        let dir = root.join(crate::record::paths::MERGE_DIR);
        for n in 1..=10 {
            fs::remove_file(dir.join(format!("segment_{n}.m4s"))).unwrap();
        }
        fs::write(dir.join("segment_1.m4s.tmp"), b"partial").unwrap();
        let e = merge_dir(&dir).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(!dir.join(crate::record::paths::FULL_NAME).exists());
        let _ = fs::remove_dir_all(&root);
    }

    /// Issue 13 hole 4: a 16-byte segment (box size 1, largesize 2^64 - 1) failed the whole merge
    /// with "Invalid argument (os error 22)". It is now a damaged segment; the rest is merged.
    #[test]
    fn a_segment_with_largesize_2_pow_64_minus_1_is_skipped() {
        let root = folder("merge-largesize");
        let dir = root.join(crate::record::paths::MERGE_DIR);
        for (seq, kind) in [(11, b"mdat"), (12, b"free"), (13, b"moof")] {
            let mut junk = 1u32.to_be_bytes().to_vec();
            junk.extend_from_slice(kind);
            junk.extend_from_slice(&u64::MAX.to_be_bytes());
            assert_eq!(junk.len(), 16);
            fs::write(dir.join(format!("segment_{seq}.m4s")), junk).unwrap();
        }
        let report = merge_dir(&root).unwrap();
        assert_eq!(report.segments, 13);
        assert_eq!(report.damaged.len(), 3);
        assert_eq!(report.samples, 250);
        assert_eq!(report.duration_ms, 10_000);
        assert_eq!(fs::read(&report.output).unwrap().len() as u64, report.bytes);
        let _ = fs::remove_dir_all(&root);
    }
}
