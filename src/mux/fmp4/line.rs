//! The per-track timeline shared by the fMP4 fragmenter and the LL-HLS part window: stream time
//! (ms, already monotonic: `media::time`) to track ticks, strictly increasing decode times, each
//! sample's duration from the next sample of its track, and the samples of the open run. No
//! cutting policy (the callers decide) and no boxes (`mux::fmp4`).

use bytes::Bytes;

use super::{Run, Sample, SAMPLE_NON_SYNC, SAMPLE_SYNC, VIDEO_TRACK_ID};

/// A sample whose duration is not known until the next one of its track arrives.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) dt: u64,
    pub(crate) ms: i64,
    pub(crate) cto: i32,
    pub(crate) sync: bool,
    pub(crate) data: Bytes,
}

/// Per-track timeline: maps the stream time (ms, already monotonic and continuous across
/// publisher clock jumps: `media::time`) to track ticks, keeps decode times strictly
/// increasing, and collects the samples of the open segment.
#[derive(Debug)]
pub(crate) struct TrackLine {
    pub(crate) id: u32,
    pub(crate) timescale: u32,
    pub(crate) last_dt: Option<u64>,
    pub(crate) last_duration: u32,
    pub(crate) default_duration: u32,
    pub(crate) pending: Option<Pending>,
    pub(crate) run: Run,
    /// Decode time (ms) of the open segment's first sample.
    pub(crate) first_ms: Option<i64>,
}

impl TrackLine {
    pub(crate) fn new(id: u32, timescale: u32, default_duration: u32) -> TrackLine {
        TrackLine {
            id,
            timescale,
            last_dt: None,
            last_duration: default_duration,
            default_duration,
            pending: None,
            run: Run {
                track_id: id,
                timescale,
                ..Run::default()
            },
            first_ms: None,
        }
    }

    pub(crate) fn ticks(&self, ms: i64) -> u64 {
        // Capped: a hostile clock must not wrap the tick count.
        let t = ((ms.max(0) as i128 * self.timescale as i128 + 500) / 1000)
            .min(u64::MAX as i128 / 2) as u64;
        match self.last_dt {
            Some(last) if t <= last => last + 1,
            _ => t,
        }
    }

    /// Closes the pending sample with a duration reaching `next_dt`.
    pub(crate) fn settle(&mut self, next_dt: Option<u64>) {
        if let Some(p) = self.pending.take() {
            let duration = match next_dt {
                Some(n) if n > p.dt => (n - p.dt).min(u32::MAX as u64) as u32,
                _ => self.last_duration,
            };
            self.last_duration = duration.max(1);
            if self.run.samples.is_empty() {
                self.run.decode_time = p.dt;
                self.first_ms = Some(p.ms);
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

    pub(crate) fn push(&mut self, ms: i64, cts_ms: i32, sync: bool, data: Bytes) {
        let dt = self.ticks(ms);
        self.settle(Some(dt));
        self.last_dt = Some(dt);
        let cto = (cts_ms as i64 * self.timescale as i64 / 1000)
            .clamp(i32::MIN as i64, i32::MAX as i64) as i32;
        self.pending = Some(Pending {
            dt,
            ms,
            cto,
            sync,
            data,
        });
    }

    /// Decode time (ms) of the open segment's first sample, counting the pending one.
    pub(crate) fn segment_start_ms(&self) -> Option<i64> {
        self.first_ms.or(self.pending.as_ref().map(|p| p.ms))
    }

    pub(crate) fn take_run(&mut self) -> Option<Run> {
        self.first_ms = None;
        if self.run.samples.is_empty() {
            return None;
        }
        let fresh = Run {
            track_id: self.id,
            timescale: self.timescale,
            ..Run::default()
        };
        Some(std::mem::replace(&mut self.run, fresh))
    }

    pub(crate) fn reset_default(&mut self) {
        self.last_duration = self.default_duration;
    }

    /// A line with the usual first-sample duration until a real one is seen: 40 ms of video
    /// (25 fps), 1024 samples of audio.
    pub(crate) fn with_default(id: u32, timescale: u32) -> TrackLine {
        let timescale = timescale.max(1);
        let default = if id == VIDEO_TRACK_ID {
            timescale / 25
        } else {
            1024
        };
        TrackLine::new(id, timescale, default.max(1))
    }

    /// The last sample's duration in ms.
    pub(crate) fn last_duration_ms(&self) -> i64 {
        self.last_duration as i64 * 1000 / self.timescale as i64
    }

    /// End (ms) of the settled samples.
    pub(crate) fn end_ms(&self) -> i64 {
        let end = self.run.decode_time as i128 + self.run.duration_ticks() as i128;
        (end * 1000 / self.timescale as i128).min(i64::MAX as i128) as i64
    }
}
