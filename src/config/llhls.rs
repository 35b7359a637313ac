//! The LL-HLS options (issue 16 point 3): `--hls-low-latency` and the `--llhls-*` window
//! settings, their `--help` rows, validation and `--print-config` lines. What the values do is
//! `crate::llhls` (the window), `origin::llhls` (the readers) and `server::llhls` (the wiring).

use getopts::Options;

use super::{err, num, ConfigError};
pub use crate::llhls::LlhlsConfig;
use crate::llhls::WindowConfig;

const DEFAULT_MAX_WAITING: usize = 1000;

pub fn options(opts: &mut Options) {
    opts.optflag(
        "",
        "hls-low-latency",
        "serve LL-HLS from memory on the HTTP port: /llhls/{app}/{stream}/index.m3u8 [off]",
    );
    opts.optopt(
        "",
        "llhls-part-ms",
        "LL-HLS part target in ms, 200-500 [333]",
        "N",
    );
    opts.optopt(
        "",
        "llhls-segment-ms",
        "LL-HLS segment target in ms (cut at the next keyframe), 1000-10000 [2000]",
        "N",
    );
    opts.optopt(
        "",
        "llhls-window",
        "LL-HLS complete segments kept in memory per stream, 1-32 [4]",
        "N",
    );
    opts.optopt(
        "",
        "llhls-max-mb",
        "LL-HLS hard memory cap per stream in MiB, 1-1024 [32]",
        "N",
    );
    opts.optopt(
        "",
        "llhls-max-waiting",
        "LL-HLS blocking requests parked per stream; beyond it 503 [1000]",
        "N",
    );
}

fn ranged<T>(m: &getopts::Matches, name: &str, default: T, lo: T, hi: T) -> Result<T, ConfigError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    let v = num(m, name, default)?;
    if v < lo || v > hi {
        return err(format!("--{name}: between {lo} and {hi}"));
    }
    Ok(v)
}

/// The window settings are validated even when the output is off, so a typo never waits for
/// the day `--hls-low-latency` is turned on.
pub fn config(m: &getopts::Matches) -> Result<Option<LlhlsConfig>, ConfigError> {
    let d = WindowConfig::default();
    let window = WindowConfig {
        part_target_ms: ranged(m, "llhls-part-ms", d.part_target_ms, 200, 500)?,
        segment_target_ms: ranged(m, "llhls-segment-ms", d.segment_target_ms, 1000, 10_000)?,
        segments: ranged(m, "llhls-window", d.segments, 1, 32)?,
        max_bytes: ranged(m, "llhls-max-mb", d.max_bytes >> 20, 1, 1024)? << 20,
    };
    let max_waiting = ranged(m, "llhls-max-waiting", DEFAULT_MAX_WAITING, 1, 1_000_000)?;
    Ok(m.opt_present("hls-low-latency").then_some(LlhlsConfig {
        window,
        max_waiting,
    }))
}

/// `--print-config` lines; the window defaults show when the output is off.
pub fn render(line: &mut dyn FnMut(&str, String), c: &Option<LlhlsConfig>) {
    line("hls-low-latency", c.is_some().to_string());
    let c = c.unwrap_or(LlhlsConfig {
        window: WindowConfig::default(),
        max_waiting: DEFAULT_MAX_WAITING,
    });
    line("llhls-part-ms", c.window.part_target_ms.to_string());
    line("llhls-segment-ms", c.window.segment_target_ms.to_string());
    line("llhls-window", c.window.segments.to_string());
    line("llhls-max-mb", (c.window.max_bytes >> 20).to_string());
    line("llhls-max-waiting", c.max_waiting.to_string());
}
