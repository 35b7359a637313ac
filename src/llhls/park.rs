//! Blocking playlist reload (RFC 8216bis 6.2.5.2): parses `_HLS_msn`/`_HLS_part`, judges a
//! request against the playlist's live edge, and parks the ones that must wait, bounded and with
//! deadlines. No sockets and no clock: `now` is passed in, ids are the caller's.

use std::time::{Duration, Instant};

/// What a playlist request asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Want {
    /// No `_HLS_` directive: answer with the current playlist.
    Now,
    /// Hold until segment `msn` is complete (`part: None`) or until part `part` of segment `msn`
    /// (or anything later) is listed.
    Block { msn: u64, part: Option<u64> },
}

/// Why a query is refused with 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryError {
    /// `_HLS_msn` or `_HLS_part` is not a decimal integer.
    BadNumber,
    /// `_HLS_part` without `_HLS_msn` (the RFC makes this a client error).
    PartWithoutMsn,
    /// The same directive twice.
    Repeated,
}

impl std::fmt::Display for QueryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            QueryError::BadNumber => "_HLS_msn/_HLS_part is not a number",
            QueryError::PartWithoutMsn => "_HLS_part without _HLS_msn",
            QueryError::Repeated => "an _HLS_ directive is repeated",
        })
    }
}

/// Parses a query string (without the `?`); other keys (tokens) are ignored.
pub fn parse_query(query: &str) -> Result<Want, QueryError> {
    let (mut msn, mut part) = (None, None);
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let slot = match key {
            "_HLS_msn" => &mut msn,
            "_HLS_part" => &mut part,
            _ => continue,
        };
        if slot.is_some() {
            return Err(QueryError::Repeated);
        }
        // Digits only and at most 19 of them, so the value always fits a u64 and "+1" is refused.
        if value.is_empty() || value.len() > 19 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(QueryError::BadNumber);
        }
        *slot = value.parse::<u64>().ok();
    }
    match (msn, part) {
        (None, None) => Ok(Want::Now),
        (None, Some(_)) => Err(QueryError::PartWithoutMsn),
        (Some(msn), part) => Ok(Want::Block { msn, part }),
    }
}

/// The live edge of a playlist: the last complete segment and the last listed part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Edge {
    /// MSN of the last complete segment, `None` before the first one closes.
    pub complete: Option<u64>,
    /// `(msn, part index)` of the last listed part, `None` before the first part.
    pub last_part: Option<(u64, u64)>,
}

/// The judgement on a blocking request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The playlist already holds what was asked: answer now.
    Ready,
    /// Park it until the edge moves.
    Wait,
    /// Too far in the future (RFC: more than two segments, or beyond the Advance Part Limit): 400.
    TooFar,
}

/// The Advance Part Limit: 3 / part target when the target is under a second, else 3.
pub fn advance_part_limit(part_target_ms: u64) -> u64 {
    if part_target_ms > 0 && part_target_ms < 1000 {
        3000 / part_target_ms
    } else {
        3
    }
}

/// Judges `want` against `edge`.
pub fn judge(want: Want, edge: Edge, part_target_ms: u64) -> Verdict {
    let Want::Block { msn, part } = want else {
        return Verdict::Ready;
    };
    let head = edge
        .last_part
        .map_or(0, |(m, _)| m)
        .max(edge.complete.map_or(0, |c| c + 1));
    if msn > head.saturating_add(2) {
        return Verdict::TooFar;
    }
    match part {
        None if edge.complete.is_some_and(|c| c >= msn) => Verdict::Ready,
        None => Verdict::Wait,
        Some(p) => match edge.last_part {
            Some(last) if last >= (msn, p) => Verdict::Ready,
            Some((m, lp))
                if m == msn && p > lp.saturating_add(advance_part_limit(part_target_ms)) =>
            {
                Verdict::TooFar
            }
            _ => Verdict::Wait,
        },
    }
}

/// One parked request: the caller's id (a connection token), what it waits for, its deadline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParkedRequest {
    pub id: u64,
    pub want: Want,
    pub deadline: Instant,
}

/// Why a request could not be parked (answer 503 at once).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Full;

/// The waiting requests of one stream, bounded in count; each waits at most `timeout`
/// (the RFC's three target durations).
#[derive(Debug)]
pub struct Parked {
    waiting: Vec<ParkedRequest>,
    max: usize,
    timeout: Duration,
}

impl Parked {
    pub fn new(max: usize, timeout: Duration) -> Parked {
        Parked {
            waiting: Vec::new(),
            max,
            timeout,
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// Parks `id` until `want` is met or `now + timeout`.
    pub fn park(&mut self, id: u64, want: Want, now: Instant) -> Result<(), Full> {
        if self.waiting.len() >= self.max {
            return Err(Full);
        }
        self.waiting.push(ParkedRequest {
            id,
            want,
            deadline: now + self.timeout,
        });
        Ok(())
    }

    /// After a new part or segment: the requests now answerable with the current playlist.
    #[must_use]
    pub fn on_part_ready(&mut self, edge: Edge, part_target_ms: u64) -> Vec<ParkedRequest> {
        let (ready, wait) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|r| judge(r.want, edge, part_target_ms) == Verdict::Ready);
        self.waiting = wait;
        ready
    }

    /// The requests whose deadline has come (answer 503).
    #[must_use]
    pub fn expired(&mut self, now: Instant) -> Vec<ParkedRequest> {
        let (gone, wait) = std::mem::take(&mut self.waiting)
            .into_iter()
            .partition(|r| r.deadline <= now);
        self.waiting = wait;
        gone
    }

    /// Every waiting request, for a stream that ended (answer them with the final playlist).
    #[must_use]
    pub fn drain(&mut self) -> Vec<ParkedRequest> {
        std::mem::take(&mut self.waiting)
    }

    /// The earliest deadline, for the loop's poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.waiting.iter().map(|r| r.deadline).min()
    }

    /// Forgets a request whose client went away.
    pub fn cancel(&mut self, id: u64) {
        self.waiting.retain(|r| r.id != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries() {
        assert_eq!(parse_query(""), Ok(Want::Now));
        assert_eq!(parse_query("token=x"), Ok(Want::Now));
        assert_eq!(
            parse_query("_HLS_msn=5&_HLS_part=2&token=x"),
            Ok(Want::Block {
                msn: 5,
                part: Some(2)
            })
        );
        assert_eq!(
            parse_query("_HLS_msn=7"),
            Ok(Want::Block { msn: 7, part: None })
        );
        assert_eq!(parse_query("_HLS_part=1"), Err(QueryError::PartWithoutMsn));
        for bad in [
            "_HLS_msn=",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=1x",
            "_HLS_msn=99999999999999999999",
        ] {
            assert_eq!(parse_query(bad), Err(QueryError::BadNumber), "{bad}");
        }
        assert_eq!(
            parse_query("_HLS_msn=1&_HLS_msn=2"),
            Err(QueryError::Repeated)
        );
    }

    #[test]
    fn judging_against_the_edge() {
        let edge = Edge {
            complete: Some(4),
            last_part: Some((5, 1)),
        };
        let b = |msn, part| Want::Block { msn, part };
        assert_eq!(judge(Want::Now, edge, 333), Verdict::Ready);
        assert_eq!(judge(b(5, Some(1)), edge, 333), Verdict::Ready);
        assert_eq!(judge(b(4, Some(9)), edge, 333), Verdict::Ready);
        assert_eq!(judge(b(5, Some(2)), edge, 333), Verdict::Wait);
        assert_eq!(judge(b(4, None), edge, 333), Verdict::Ready);
        assert_eq!(judge(b(5, None), edge, 333), Verdict::Wait);
        assert_eq!(judge(b(7, Some(0)), edge, 333), Verdict::Wait);
        assert_eq!(judge(b(8, Some(0)), edge, 333), Verdict::TooFar);
        // Advance Part Limit for 333 ms parts is 9.
        assert_eq!(advance_part_limit(333), 9);
        assert_eq!(judge(b(5, Some(10)), edge, 333), Verdict::Wait);
        assert_eq!(judge(b(5, Some(11)), edge, 333), Verdict::TooFar);
        assert_eq!(judge(b(u64::MAX, None), edge, 333), Verdict::TooFar);
    }

    #[test]
    fn parked_wakes_when_the_part_exists_not_before_and_times_out_at_its_deadline() {
        let t0 = Instant::now();
        let mut parked = Parked::new(2, Duration::from_secs(6));
        let want = Want::Block {
            msn: 3,
            part: Some(1),
        };
        parked.park(1, want, t0).unwrap();
        parked
            .park(2, Want::Block { msn: 9, part: None }, t0)
            .unwrap();
        assert_eq!(parked.park(3, want, t0), Err(Full));
        let before = Edge {
            complete: Some(2),
            last_part: Some((3, 0)),
        };
        assert!(parked.on_part_ready(before, 333).is_empty());
        let after = Edge {
            last_part: Some((3, 1)),
            ..before
        };
        let woken = parked.on_part_ready(after, 333);
        assert_eq!(woken.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1]);
        assert_eq!(parked.next_deadline(), Some(t0 + Duration::from_secs(6)));
        assert!(parked.expired(t0 + Duration::from_millis(5999)).is_empty());
        let gone = parked.expired(t0 + Duration::from_secs(6));
        assert_eq!(gone.iter().map(|r| r.id).collect::<Vec<_>>(), vec![2]);
        assert!(parked.is_empty());
        parked.park(4, want, t0).unwrap();
        parked.cancel(4);
        assert_eq!(parked.len(), 0);
    }
}
