//! Per-stream health and a 10-minute history for the dashboard: pure, sans-IO (`now_ms` is passed
//! in, nothing reads a clock, a socket or a file); it does not decide when to sample or where the
//! JSON goes (the hub feeds it frames and counters, the API serves what it renders).
//!
//! - `health`: `StreamHealth`, fed every `media::Frame` and the server's counters; its verdict is
//!   green / amber / red with the reason in words.
//! - `history`: `StreamHistory` and `ServerHistory`, fixed-size rings of one sample per interval
//!   (5 s by default: 120 samples, 10 minutes); memory never grows after construction.
//!
//! # JSON
//!
//! Written by serde_json from `HealthReport` and the history columns (numbers are `null` when
//! unknown). The `health` field of an `/api/streams` entry (`StreamHealth::report`):
//!
//! ```text
//! {"level":"green"|"amber"|"red",
//!  "reason":"keyframe every 10.0 s: set your encoder's keyframe interval to 2 s",
//!  "reasons":[{"level":"amber","text":"..."}, ...],      // every finding, worst first
//!  "keyframe_interval_ms":10000|null, "fps_in":25.0|null, "fps_declared":25.0|null,
//!  "drift_ms":{"audio":12|null,"video":-3|null,"av":15|null},
//!  "timestamp_jumps":0, "last_frame_ago_ms":40|null,
//!  "viewers":{"skips":0,"frames_dropped":0,"slow_disconnects":0},
//!  "recorders":[{"name":"hls","state":"writing"|"stopped","why":null|"disk full","error":false,"bytes":123}]}
//! ```
//!
//! `/api/streams/history` (`history_json`): columns of equal length, oldest first; `ago_s` is how
//! long before the answer each sample was taken, so a page needs no clock in common with the server:
//!
//! ```text
//! {"interval_s":5,
//!  "server":{"ago_s":[595,...,0],"cpu_percent":[3.1,...],"rss_bytes":[...],"connections":[...]},
//!  "streams":[{"app":"live","stream":"cam","ago_s":[...],"bitrate_in_kbps":[...],"bitrate_out_kbps":[...],
//!              "viewers":{"rtmp":[...],"http_flv":[...],"ws_flv":[...]}}]}
//! ```
//!
//! docs/dashboard.md has the same schema with the thresholds behind each verdict.

pub mod health;
pub mod history;

pub use health::{HealthReport, Level, RecorderState, StreamHealth, ViewerCounters};
pub use history::{history_json, Ring, ServerHistory, StreamHistory, Viewers};
