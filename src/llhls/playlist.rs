//! The LL-HLS media playlist of a `LiveWindow` (RFC 8216bis): header, server control, parts of
//! the last segments, preload hint, written with `mux::m3u8`; and the blocking-reload glue
//! (`answerable`, `wake`) that judges parked requests against the window's edge. Text only: no
//! HTTP (`answer`), no sockets.

use super::park::{judge, Parked, ParkedRequest, Verdict, Want};
use super::window::{init_name, part_name, segment_name, LiveWindow};
use crate::mux::hls::format_iso8601;
use crate::mux::m3u8::{secs_of_ms, Header, MediaPlaylist};

/// RFC 8216bis: parts are listed for the segments within three target durations of the end.
const PART_LIST_TARGETS: u64 = 3;

/// `#EXT-X-TARGETDURATION`: the segment target, or the longest listed segment rounded to the
/// nearest second when one is longer (hard cuts, long GOPs).
pub fn target_duration(w: &LiveWindow) -> u64 {
    let target = u64::from(w.config().segment_target_ms).div_ceil(1000);
    let longest = w
        .segments()
        .filter(|s| s.complete)
        .map(|s| (s.duration_ms() + 500) / 1000)
        .max()
        .unwrap_or(0);
    target.max(longest).max(1)
}

/// The playlist, `None` until the window has its first part. `epoch_ms` is the wall clock (Unix
/// ms) at `Frame::time` 0, for `#EXT-X-PROGRAM-DATE-TIME` on every segment; `None` leaves it out.
pub fn render(w: &LiveWindow, epoch_ms: Option<i64>) -> Option<String> {
    let first = w.segments().next()?;
    let target = target_duration(w);
    let first_init = init_name(first.init);
    let mut p = MediaPlaylist::new(
        &Header {
            version: 9,
            target_duration: target,
            media_sequence: first.msn,
            discontinuity_sequence: w.discontinuity_sequence(),
            map: Some(&first_init),
            ..Header::default()
        },
        w.segments().count(),
    );
    p.low_latency(u64::from(w.config().part_target_ms));
    // Distance from each segment's end to the playlist's end decides whether its parts are listed.
    let durations: Vec<u64> = w.segments().map(|s| s.duration_ms()).collect();
    let mut after: Vec<u64> = vec![0; durations.len()];
    for i in (0..durations.len().saturating_sub(1)).rev() {
        after[i] = after[i + 1].saturating_add(durations[i + 1]);
    }
    let horizon = target.saturating_mul(PART_LIST_TARGETS * 1000);
    let mut init = first.init;
    for (i, s) in w.segments().enumerate() {
        if s.init != init {
            p.map(&init_name(s.init));
            init = s.init;
        }
        let pdt = epoch_ms.map(|e| format_iso8601(e.saturating_add(s.start_time as i64)));
        // The head's own discontinuity is counted in DISCONTINUITY-SEQUENCE instead.
        p.segment_tags(s.discontinuity && i > 0, pdt.as_deref());
        if !s.complete || after[i] < horizon {
            for part in &s.parts {
                p.part(
                    secs_of_ms(part.duration_ms),
                    &part_name(part.id),
                    part.independent,
                );
            }
        }
        if s.complete {
            p.extinf(secs_of_ms(s.duration_ms()), &segment_name(s.msn));
        }
    }
    if let Some(next) = w.preload_hint() {
        p.preload_hint(&part_name(next));
    }
    Some(p.finish(w.ended()))
}

/// Whether a playlist request can be answered now (`Ready`), must be parked (`Wait`) or is
/// refused (`TooFar`: 400), against the window's live edge.
pub fn answerable(w: &LiveWindow, want: Want) -> Verdict {
    judge(want, w.edge(), u64::from(w.config().part_target_ms))
}

/// After `LiveWindow::push` said a part was added: the parked requests now answerable. After
/// the stream ended every waiting request is answered (nothing more will come).
#[must_use]
pub fn wake(w: &LiveWindow, parked: &mut Parked) -> Vec<ParkedRequest> {
    let mut ready = parked.on_part_ready(w.edge(), u64::from(w.config().part_target_ms));
    if w.ended() {
        ready.extend(parked.drain());
    }
    ready
}

#[cfg(test)]
#[path = "playlist_tests.rs"]
mod tests;
