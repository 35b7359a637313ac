//! The FLV gateway's clocks, run from the loop's timer: due reconnects, pulls that used their
//! read budget, and every `TICK` the housekeeping: the head timeout, 404 waits and the 30 s
//! no-data end (viewers get a clean end), the grace period after the last viewer, and the stats
//! line.

use std::collections::HashMap;
use std::time::Instant;

use log::info;

use super::{Server, GRACE, HEAD_TIMEOUT, NOT_FOUND_WAIT, NO_DATA, TICK, TOKEN_BASE};
use crate::media::StreamKey;
use crate::server::conn::ConnState;

impl Server {
    /// Retries, the read budget, and the periodic housekeeping.
    pub(in crate::server) fn upstream_timers(&mut self, now: Instant) {
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        for idx in std::mem::take(&mut g.again) {
            self.upstream_io(idx);
        }
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let due: Vec<usize> = g
            .pulls
            .iter()
            .filter(|(_, p)| p.retry_at.is_some_and(|r| r <= now))
            .map(|(i, _)| i)
            .collect();
        for idx in due {
            let Some(p) = self.gateway.as_mut().and_then(|g| g.pulls.get_mut(idx)) else {
                continue;
            };
            if p.viewers + p.pending.len() > 0 {
                self.upstream_connect(idx);
            } else {
                p.retry_at = None;
            }
        }
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        if now < g.next_tick {
            return;
        }
        g.next_tick = now + TICK;
        self.upstream_housekeeping(now);
    }

    fn upstream_housekeeping(&mut self, now: Instant) {
        let mut counts: HashMap<StreamKey, (usize, usize, u64)> = HashMap::new();
        for s in self.core.hub.streams() {
            let viewers = s.viewers_rtmp + s.viewers_http_flv + s.viewers_ws_flv;
            counts.insert(s.key.clone(), (viewers, s.viewers_waiting, s.bytes_out));
        }
        let Some(g) = self.gateway.as_mut() else {
            return;
        };
        let mut refuse = Vec::new();
        let mut end_stream = Vec::new();
        let mut teardown = Vec::new();
        let mut retry_head = Vec::new();
        for (idx, p) in g.pulls.iter_mut() {
            // Parked connections still waiting (closed ones, and reused tokens, drop out).
            let conns = &self.conns;
            let mut seen = Vec::with_capacity(p.pending.len());
            p.pending.retain(|&t| {
                let ok = !seen.contains(&t)
                    && conns.get(t).is_some_and(|c| {
                        !c.closed
                            && matches!(&c.state, ConnState::Pending { key, .. } if *key == p.key)
                    });
                seen.push(t);
                ok
            });
            for &t in &p.pending {
                let Some(ConnState::Pending { since, .. }) = conns.get(t).map(|c| &c.state) else {
                    continue;
                };
                let waited = now.saturating_duration_since(*since);
                if p.last_status == Some(404) && waited >= NOT_FOUND_WAIT {
                    refuse.push((t, 404, "Stream not found."));
                } else if matches!(p.last_status, Some(401 | 403)) {
                    // Retrying will not fix a credential: say so now, not after NO_DATA.
                    refuse.push((t, 502, "The upstream refused this gateway's token."));
                } else if p.cert_refused {
                    refuse.push((t, 502, "The upstream's TLS certificate was not accepted."));
                } else if waited >= NO_DATA {
                    refuse.push((t, 503, "Upstream unavailable."));
                }
            }
            let (viewers, waiting, bytes_out) = counts.get(&p.key).copied().unwrap_or_default();
            p.viewers = viewers;
            p.waiting = waiting;
            p.bytes_out = bytes_out;
            if p.published.is_some()
                && viewers > 0
                && now.saturating_duration_since(p.last_data) >= NO_DATA
            {
                end_stream.push(idx);
            }
            if let Some(up) = &p.conn {
                if !up.got_head && now.saturating_duration_since(up.started) >= HEAD_TIMEOUT {
                    retry_head.push(idx);
                }
            }
            let refused_here = refuse
                .iter()
                .filter(|(t, ..)| p.pending.contains(t))
                .count();
            if viewers + p.pending.len() - refused_here == 0 {
                let since = *p.idle_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= GRACE {
                    teardown.push(idx);
                }
            } else {
                p.idle_since = None;
            }
        }
        for (t, status, body) in refuse {
            if let Some(c) = self.conns.get(t) {
                info!("HTTP {}: answering {status} ({body})", c.peer);
            }
            self.refuse_pending(t, status, body);
        }
        for idx in retry_head {
            self.upstream_lost(idx, "no answer from the upstream", Some(0));
        }
        for idx in end_stream {
            let Some(p) = self.gateway.as_mut().and_then(|g| g.pulls.get_mut(idx)) else {
                continue;
            };
            let Some(h) = p.published.take() else {
                continue;
            };
            let key = p.key.clone();
            info!(
                "{key}: no data from the upstream for {} s; ending its viewers",
                NO_DATA.as_secs()
            );
            self.end_publish(h, TOKEN_BASE + idx);
            // An upstream that answered but sends nothing is no good to the next viewer either:
            // start afresh (the next 200 publishes the stream again).
            self.upstream_lost(idx, "no data", None);
        }
        for idx in teardown {
            self.upstream_drop_conn(idx);
            let Some(g) = self.gateway.as_mut() else {
                return;
            };
            if !g.pulls.contains(idx) {
                continue;
            }
            let p = g.pulls.remove(idx);
            g.by_key.remove(&p.key);
            info!(
                "{}: no viewers for {} s; upstream closed",
                p.key,
                GRACE.as_secs()
            );
            if let Some(h) = p.published {
                self.end_publish(h, TOKEN_BASE + idx);
            }
        }
    }
}
