//! The hub's viewers: joining a stream (`add_viewer`, `start_viewer`), leaving it
//! (`remove_viewer`), moving between the live edge's shared logs and a queue of their own
//! (`follow`, `settle`), pausing and choosing tracks. What they are sent is decided by the
//! fan-out in `mod.rs` and serialised by `packet`; how slow ones are treated, by `queue`.

use super::*;

impl Hub {
    /// A new viewer of `key` in `form`; `token` is the server's connection token. Returns its
    /// id and whether the stream is live. The queue starts empty: push the protocol preamble,
    /// then call `start_viewer`.
    pub fn add_viewer(
        &mut self,
        key: &StreamKey,
        form: OutputForm,
        token: usize,
        now_ms: u64,
    ) -> (ViewerId, bool) {
        let i = self.slot_for(key);
        let stream = &mut self.streams[i].stream;
        let mut v = Viewer::new(
            key.clone(),
            form,
            token,
            ViewerQueue::new(self.config.queue_limits()),
            now_ms,
        );
        v.form_idx = stream.add_form(form);
        v.stream = i;
        v.pos = stream.viewers.len();
        let id = self.viewers.insert(v);
        stream.viewers.push(id);
        (id, stream.is_live())
    }

    /// The publisher of `key` restarted its media without leaving (a relay's upstream came
    /// back): drop the cached GOP so joiners never start on the previous session's pictures.
    pub fn restart_gop(&mut self, key: &StreamKey) {
        if let Some(stream) = self.stream_mut(key) {
            stream.cache.restart_gop();
        }
    }

    /// Starts media for a viewer: when live (and, for FLV forms, once the tracks are known),
    /// queues the FLV header, metadata, sequence headers and GOP; otherwise the viewer waits
    /// and gets all of it when the publisher starts. Flush the viewer afterwards.
    pub fn start_viewer(&mut self, id: ViewerId) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        if v.state != ViewerState::Added || v.ended.is_some() {
            return;
        }
        let Some(stream) = self
            .index
            .get(&v.key)
            .and_then(|&i| self.streams.get_mut(i))
            .map(|s| &mut s.stream)
        else {
            return;
        };
        if stream.is_live() && stream.prime(v) {
            join_pushed(stream, v, id);
        } else {
            v.state = ViewerState::Waiting;
            stream.waiting += 1;
        }
    }

    /// Forgets a viewer (after the server closed it, or to detach it).
    pub fn remove_viewer(&mut self, id: ViewerId) {
        if !self.viewers.contains(id) {
            return;
        }
        let v = self.viewers.remove(id);
        if !self.late_slow.is_empty() {
            self.late_slow.retain(|&l| l != id);
        }
        let stats = v.queue.stats;
        self.closed.bytes_sent += stats.bytes_sent;
        self.closed.frames_dropped += stats.frames_dropped;
        self.closed.bytes_dropped += stats.bytes_dropped;
        self.closed.skips += stats.skips;
        if v.pos == usize::MAX {
            return;
        }
        let Some(&i) = self.index.get(&v.key) else {
            return;
        };
        let stream = &mut self.streams[i].stream;
        if v.state == ViewerState::Live {
            match v.follow {
                Some(cursor) => {
                    let log = &mut stream.logs[v.form_idx];
                    if cursor == log.head() {
                        list_remove(&mut log.idle, &mut self.viewers, v.list_pos);
                    } else {
                        log.unpend();
                    }
                }
                None => list_remove(&mut stream.pushed, &mut self.viewers, v.list_pos),
            }
        }
        stream.viewers.swap_remove(v.pos);
        if let Some(&moved) = stream.viewers.get(v.pos) {
            self.viewers[moved].pos = v.pos;
        }
        stream.forms[v.form_idx].1 -= 1;
        if v.state == ViewerState::Waiting {
            stream.waiting -= 1;
        }
        stream.bytes_out_closed += stats.bytes_sent;
        stream.closed_skips += stats.skips;
        stream.closed_frames_dropped += stats.frames_dropped;
        if !stream.is_live() && stream.viewers.is_empty() {
            self.remove_slot(i);
        }
    }

    /// Viewers the hub has not ended (at shutdown, each gets its end marker).
    pub fn viewer_ids(&self) -> Vec<ViewerId> {
        self.viewers
            .iter()
            .filter(|(_, v)| v.ended.is_none())
            .map(|(i, _)| i)
            .collect()
    }

    /// A viewer, to write its queue or queue bytes for it. A viewer that follows its form's log
    /// is settled first (the packets it has not had go into its queue), so the queue is
    /// exactly what per-packet pushes would have made it.
    pub fn viewer(&mut self, id: ViewerId) -> Option<&mut Viewer> {
        self.settle_id(id);
        self.viewers.get_mut(id)
    }

    /// The server wrote all that `id` had queued: while nothing else touches it, it follows
    /// its form's log instead of getting each packet pushed (see `stream::FormLog`). Paused,
    /// ended and detached viewers, and those with bytes left, stay as they are.
    pub fn follow(&mut self, id: ViewerId) {
        let Some(v) = self.viewers.get(id) else {
            return;
        };
        if v.follow.is_some()
            || v.state != ViewerState::Live
            || v.ended.is_some()
            || v.paused
            || v.pos == usize::MAX
            || !v.queue.is_empty()
        {
            return;
        }
        let (form_idx, pos) = (v.form_idx, v.list_pos);
        let Some(slot) = self.streams.get_mut(v.stream) else {
            return;
        };
        let stream = &mut slot.stream;
        list_remove(&mut stream.pushed, &mut self.viewers, pos);
        let log = &mut stream.logs[form_idx];
        let v = &mut self.viewers[id];
        v.follow = Some(log.head());
        v.list_pos = log.idle.len();
        log.idle.push(id);
    }

    /// True when `id` follows its form's log (tests, stats).
    pub fn is_following(&self, id: ViewerId) -> bool {
        self.viewers.get(id).is_some_and(|v| v.follow.is_some())
    }

    /// Settles `id` if it follows a log (see `settle`); a hard bound crossed on the way ends
    /// it, reported with the next frame's `too_slow`.
    fn settle_id(&mut self, id: ViewerId) {
        let Some(v) = self.viewers.get(id) else {
            return;
        };
        if v.follow.is_none() {
            return;
        }
        let Some(slot) = self.streams.get_mut(v.stream) else {
            return;
        };
        let stream = &mut slot.stream;
        if let Some(reason) = settle(stream, &mut self.viewers, id) {
            let v = &mut self.viewers[id];
            log::info!(
                "{}: viewer {} ({:?}) too slow, disconnecting: {reason}",
                stream.key,
                v.token,
                v.form
            );
            v.ended = Some(ViewerEnd::TooSlow);
            self.slow_disconnects += 1;
            stream.slow_disconnects += 1;
            self.late_slow.push(id);
        }
    }

    /// Settles every follower of the stream in slot `i` (before its session changes or ends).
    pub(super) fn settle_all(&mut self, i: usize) {
        let n = self.streams[i].stream.viewers.len();
        for k in 0..n {
            let id = self.streams[i].stream.viewers[k];
            self.settle_id(id);
        }
    }

    pub fn viewer_ref(&self, id: ViewerId) -> Option<&Viewer> {
        self.viewers.get(id)
    }

    /// RTMP pause: no media while paused; on resume the metadata and sequence headers are
    /// sent again and the viewer waits for the next keyframe.
    pub fn set_paused(&mut self, id: ViewerId, paused: bool) {
        // What it follows came before the change.
        self.settle_id(id);
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = v.paused && !paused;
        v.paused = paused;
        if resumed {
            self.on_resume(id, |stream, v| {
                stream.push_headers(v, true, true, true);
                v.queue.reset_lag();
                v.queue.wait_for_key();
            });
        }
    }

    /// RTMP receiveAudio: on re-enable, the audio sequence header again.
    pub fn set_receive_audio(&mut self, id: ViewerId, on: bool) {
        // What it follows came before the change.
        self.settle_id(id);
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = !v.audio_on && on;
        v.audio_on = on;
        if resumed {
            self.on_resume(id, |stream, v| stream.push_headers(v, false, false, true));
        }
    }

    /// RTMP receiveVideo: on re-enable, the video sequence header again, then video from the
    /// next keyframe.
    pub fn set_receive_video(&mut self, id: ViewerId, on: bool) {
        // What it follows came before the change.
        self.settle_id(id);
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        let resumed = !v.video_on && on;
        v.video_on = on;
        if resumed {
            self.on_resume(id, |stream, v| {
                stream.push_headers(v, false, true, false);
                v.video_wait_key = true;
            });
        }
    }

    /// Runs `resume` for a playing viewer that turned media back on (flush it afterwards).
    fn on_resume(&mut self, id: ViewerId, resume: impl FnOnce(&mut Stream, &mut Viewer)) {
        let Some(v) = self.viewers.get_mut(id) else {
            return;
        };
        if v.state != ViewerState::Live || v.ended.is_some() {
            return;
        }
        let stream = self
            .index
            .get(&v.key)
            .and_then(|&i| self.streams.get_mut(i));
        if let Some(slot) = stream {
            resume(&mut slot.stream, v);
        }
    }
}

/// Adds a viewer that starts playing to the pushed list.
pub(super) fn join_pushed(stream: &mut Stream, v: &mut Viewer, id: ViewerId) {
    v.list_pos = stream.pushed.len();
    stream.pushed.push(id);
}

/// Removes the entry at `pos` of a list whose viewers keep their index in `list_pos`.
pub(super) fn list_remove(list: &mut Vec<ViewerId>, viewers: &mut Slab<Viewer>, pos: usize) {
    list.swap_remove(pos);
    if let Some(&moved) = list.get(pos) {
        viewers[moved].list_pos = pos;
    }
}

/// Takes follower `id` off its form's log: the packets from its cursor on go into its queue
/// in order, through `Viewer::deliver` (filters and slow-viewer policy) exactly as per-packet
/// pushes would have, and it joins the pushed list. Returns the hard bound it crossed, if any
/// (also when the log dropped packets it had not had: see `stream::LOG_MAX`).
pub(super) fn settle(
    stream: &mut Stream,
    viewers: &mut Slab<Viewer>,
    id: ViewerId,
) -> Option<SlowReason> {
    let v = &mut viewers[id];
    let cursor = v.follow.take()?;
    let log = &mut stream.logs[v.form_idx];
    let mut slow = None;
    if cursor == log.head() {
        let pos = v.list_pos;
        list_remove(&mut log.idle, viewers, pos);
    } else {
        if cursor < log.base {
            let span = match (log.packets.front(), log.packets.back()) {
                (Some(a), Some(b)) => b.time.saturating_sub(a.time),
                _ => 0,
            };
            slow = Some(SlowReason::Lag(span));
        } else {
            for packet in log.packets.range((cursor - log.base) as usize..) {
                if let Some(Verdict::TooSlow(reason)) = v.deliver(packet) {
                    slow = Some(reason);
                    break;
                }
            }
        }
        log.unpend();
    }
    join_pushed(stream, &mut viewers[id], id);
    slow
}
