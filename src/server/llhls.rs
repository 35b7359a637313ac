//! LL-HLS wiring, the loop half (docs/llhls.md "Wiring"): the `/llhls/{app}/{stream}/...`
//! answers on the HTTP port; a blocking request is a connection in `ConnState::LlhlsWait`,
//! answered in the loop turn of the frame that made its part, 503 at its deadline, cancelled when
//! its client leaves. The windows and `step` are `origin::llhls`; the window, the playlist and the
//! blocking rules are `crate::llhls`; nothing here cuts media.

use std::rc::Rc;
use std::time::Instant;

use log::debug;

use super::conn::ConnState;
use super::Server;
use crate::http::request::{Request, MAX_HEAD};
use crate::llhls::answer::{self, Answer};
use crate::llhls::park;
use crate::llhls::playlist;
use crate::media::StreamKey;
use crate::origin::llhls::{step, Live, Shared, Step, Waiting, PLAYLIST};

/// A client that leaves while parked cancels its wait (`Server::close`).
pub(super) fn cancel(state: &ConnState, token: usize) {
    if let ConnState::LlhlsWait(w) = state {
        w.live.borrow_mut().parked.cancel(token as u64);
    }
}

impl Server {
    /// `/llhls/{app}/{stream}/{file}`: the play check for the playlist (so `--play-token` and
    /// the hooks protect LL-HLS; the media names come from it), then `llhls_allowed`.
    pub(super) fn http_llhls(&mut self, token: usize, req: &Request, key: StreamKey, file: String) {
        let keep_alive = req.keep_alive();
        if self.core.llhls.is_none() {
            let body = "LL-HLS is off (start rtmpd with --hls-low-latency).";
            let reply = crate::http::response::simple(404, body, keep_alive);
            return self.http_reply(token, reply, keep_alive);
        }
        if file != PLAYLIST {
            return self.llhls_allowed(token, req, key, file);
        }
        // The access module has no HLS protocol name; LL-HLS is plain HTTP like HTTP-FLV.
        let protocol = crate::access::Protocol::HttpFlv;
        if let Some(key) = self.http_judge_play(token, req, key, protocol) {
            self.llhls_allowed(token, req, key, file);
        }
    }

    /// A request that may be served: 400 for a bad `_HLS_` query, 404 for a stream with no
    /// window, else answered now or parked.
    pub(super) fn llhls_allowed(
        &mut self,
        token: usize,
        req: &Request,
        key: StreamKey,
        file: String,
    ) {
        let keep_alive = req.keep_alive();
        let want = if file == PLAYLIST {
            match park::parse_query(req.query().unwrap_or("")) {
                Ok(w) => Some(w),
                Err(e) => {
                    debug!("LL-HLS {key}: {e}");
                    return self.llhls_send(token, answer::error(400, keep_alive), keep_alive, 1);
                }
            }
        } else {
            None
        };
        let served = match self.conns.get(token).map(|c| &c.state) {
            Some(ConnState::HttpHead { served }) => *served,
            _ => 1,
        };
        let Some(live) = self.core.llhls.as_ref().and_then(|l| l.get(&key)) else {
            debug!("LL-HLS {key}: not live");
            return self.llhls_send(token, answer::error(404, keep_alive), keep_alive, served);
        };
        let w = Waiting {
            live,
            file,
            want,
            keep_alive,
            head_only: req.method == "HEAD",
            served,
        };
        self.llhls_step(token, w);
    }

    /// Answers `w` now, or parks it (503 at once when its stream has too many waiting).
    fn llhls_step(&mut self, token: usize, w: Waiting) {
        let s = step(&w.live.borrow(), &w);
        match s {
            Step::Answer(a) => self.llhls_send(token, a, w.keep_alive, w.served),
            Step::Park(want) => {
                let parked = w
                    .live
                    .borrow_mut()
                    .parked
                    .park(token as u64, want, self.now);
                if parked.is_err() {
                    debug!("LL-HLS: too many requests waiting on one stream; 503");
                    self.totals.refused += 1;
                    return self.llhls_send(
                        token,
                        answer::error(503, w.keep_alive),
                        w.keep_alive,
                        w.served,
                    );
                }
                if let Some(conn) = self.conns.get_mut(token) {
                    conn.state = ConnState::LlhlsWait(Box::new(w));
                }
            }
        }
    }

    /// Queues an answer (its body as shared chunks) and puts the connection back to reading
    /// requests; a parked one may have buffered pipelined heads, parsed next turn.
    fn llhls_send(&mut self, token: usize, a: Answer, keep_alive: bool, served: u32) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        let was_parked = matches!(conn.state, ConnState::LlhlsWait(_));
        conn.state = ConnState::HttpHead { served };
        if let Some(acc) = &mut conn.access {
            acc.status = std::str::from_utf8(a.head.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            acc.bytes = a.body.iter().map(|b| b.len() as u64).sum();
        }
        conn.last_output = self.now;
        conn.out.push(a.head.into());
        for b in a.body {
            conn.out.push(b);
        }
        if !keep_alive {
            conn.close_after_flush = true;
        }
        if was_parked {
            if !conn.head.is_empty() {
                self.pending_parse.push(token);
            }
            self.write_conn(token);
        }
    }

    /// Bytes from a parked client: kept for after its answer (pipelining), bounded.
    pub(super) fn llhls_input(&mut self, token: usize, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(token) else {
            return;
        };
        if conn.head.len().saturating_add(data.len()) > 2 * MAX_HEAD {
            return self.close(token, "request flood while waiting for LL-HLS");
        }
        conn.head.extend_from_slice(data);
    }

    /// Right after the frames of a loop turn: the parked requests their parts made answerable.
    pub(super) fn llhls_wake(&mut self) {
        let Some(l) = self.core.llhls.as_mut() else {
            return;
        };
        for live in l.take_woken() {
            let ready = {
                let mut g = live.borrow_mut();
                let Live { window, parked, .. } = &mut *g;
                playlist::wake(window, parked)
            };
            for r in ready {
                let Ok(token) = usize::try_from(r.id) else {
                    continue;
                };
                let Some(w) = self.llhls_unpark(token, &live) else {
                    continue;
                };
                self.llhls_step(token, w);
            }
        }
    }

    /// The waiting state of `token`, when it waits on `live` (a closed or reused slot does not).
    /// The connection stays `LlhlsWait` until answered, so `llhls_send` flushes it.
    fn llhls_unpark(&mut self, token: usize, live: &Shared) -> Option<Waiting> {
        let conn = self.conns.get(token)?;
        if conn.closed {
            return None;
        }
        match &conn.state {
            ConnState::LlhlsWait(w) if Rc::ptr_eq(&w.live, live) => Some((**w).clone()),
            _ => None,
        }
    }

    /// Parked requests past their deadline get 503 (RFC 8216bis: a server that cannot answer
    /// in three target durations); windows that ended a while ago are dropped.
    pub(super) fn llhls_timers(&mut self) {
        let now = self.now;
        let Some(l) = self.core.llhls.as_mut() else {
            return;
        };
        for token in l.expire(now) {
            let Some(conn) = self.conns.get_mut(token) else {
                continue;
            };
            let (keep_alive, served) = match &conn.state {
                ConnState::LlhlsWait(w) if !conn.closed => (w.keep_alive, w.served),
                _ => continue,
            };
            debug!("LL-HLS {}: blocking request timed out; 503", conn.peer);
            self.llhls_send(token, answer::error(503, keep_alive), keep_alive, served);
        }
    }

    /// The earliest parked deadline (the loop's poll timeout).
    pub(super) fn llhls_deadline(&self) -> Option<Instant> {
        self.core.llhls.as_ref().and_then(|l| l.next_deadline())
    }
}
