//! The per-track timeline of the LL-HLS window: stream milliseconds to track ticks (strictly
//! increasing), each sample's duration from the next one of its track, and the samples of the
//! open part. No cutting policy (`window`) and no boxes (`mux::fmp4`).

use crate::mux::fmp4::{Run, Sample, SAMPLE_NON_SYNC, SAMPLE_SYNC, VIDEO_TRACK_ID};
use bytes::Bytes;

/// A sample whose duration is known when the next one of its track arrives.
#[derive(Debug)]
pub(super) struct Pending {
    pub(super) dt: u64,
    pub(super) cto: i32,
    pub(super) sync: bool,
    pub(super) data: Bytes,
}

/// Per-track timeline: stream ms (from the window's base) to track ticks, strictly increasing,
/// and the samples of the open part.
#[derive(Debug)]
pub(super) struct Line {
    pub(super) timescale: u32,
    pub(super) last_dt: Option<u64>,
    pub(super) last_duration: u32,
    pub(super) default_duration: u32,
    pub(super) pending: Option<Pending>,
    pub(super) run: Run,
}

impl Line {
    pub(super) fn new(track_id: u32, timescale: u32) -> Line {
        let timescale = timescale.max(1);
        // 40 ms of video, 1024 samples of audio, until a real duration is seen.
        let default_duration = if track_id == VIDEO_TRACK_ID {
            timescale / 25
        } else {
            1024
        }
        .max(1);
        Line {
            timescale,
            last_dt: None,
            last_duration: default_duration,
            default_duration,
            pending: None,
            run: Run {
                track_id,
                timescale,
                ..Run::default()
            },
        }
    }

    pub(super) fn ticks(&self, ms: i64) -> u64 {
        let t = ((ms.max(0) as i128 * self.timescale as i128 + 500) / 1000)
            .min(u64::MAX as i128 / 2) as u64;
        match self.last_dt {
            Some(last) if t <= last => last + 1,
            _ => t,
        }
    }

    pub(super) fn settle(&mut self, next_dt: Option<u64>) {
        if let Some(p) = self.pending.take() {
            let duration = match next_dt {
                Some(n) if n > p.dt => (n - p.dt).min(u32::MAX as u64) as u32,
                _ => self.last_duration,
            };
            self.last_duration = duration.max(1);
            if self.run.samples.is_empty() {
                self.run.decode_time = p.dt;
            }
            self.run.samples.push(Sample {
                duration: self.last_duration,
                size: p.data.len() as u32,
                flags: if p.sync { SAMPLE_SYNC } else { SAMPLE_NON_SYNC },
                cto: p.cto,
            });
            self.run.data.push(p.data);
        }
    }

    pub(super) fn push(&mut self, ms: i64, cts_ms: i32, sync: bool, data: Bytes) {
        let dt = self.ticks(ms);
        self.settle(Some(dt));
        self.last_dt = Some(dt);
        let cto = (cts_ms as i64 * self.timescale as i64 / 1000)
            .clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        self.pending = Some(Pending {
            dt,
            cto,
            sync,
            data,
        });
    }

    pub(super) fn last_duration_ms(&self) -> i64 {
        self.last_duration as i64 * 1000 / self.timescale as i64
    }

    /// End (ms) of the settled samples.
    pub(super) fn end_ms(&self) -> i64 {
        let end = self.run.decode_time as i128 + self.run.duration_ticks() as i128;
        (end * 1000 / self.timescale as i128).min(i64::MAX as i128) as i64
    }

    pub(super) fn take_run(&mut self) -> Option<Run> {
        if self.run.samples.is_empty() {
            return None;
        }
        let fresh = Run {
            track_id: self.run.track_id,
            timescale: self.timescale,
            ..Run::default()
        };
        Some(std::mem::replace(&mut self.run, fresh))
    }
}
