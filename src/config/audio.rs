//! `--aac-bitrate`: the AAC-LC bitrate of the audio bridge's Opus to AAC direction (the AAC
//! that RTMP and FLV players of an Opus stream get). Its `--help` row, validation and
//! `--print-config` line. What it does is `audio::opus_aac` and `audio::aac_worker`.

use getopts::Options;

use super::{err, ConfigError};

/// 128 kbit/s, stereo or mono.
pub const DEFAULT_AAC_BITRATE: u32 = 128_000;
const MIN: u32 = 32_000;
const MAX: u32 = 320_000;

pub fn options(opts: &mut Options) {
    opts.optopt(
        "",
        "aac-bitrate",
        "AAC bitrate for RTMP and FLV players of Opus streams (the audio bridge), 32k-320k [128k]",
        "RATE",
    );
}

/// kbit/s as `96`, `96k` or `96000`.
pub fn config(m: &getopts::Matches) -> Result<u32, ConfigError> {
    let Some(s) = m.opt_str("aac-bitrate") else {
        return Ok(DEFAULT_AAC_BITRATE);
    };
    let t = s.trim();
    let (digits, k) = match t.strip_suffix(['k', 'K']) {
        Some(d) => (d, true),
        None => (t, false),
    };
    let bps = match digits.parse::<u32>() {
        Ok(n) if k || n <= 1000 => n.checked_mul(1000),
        Ok(n) => Some(n),
        Err(_) => None,
    };
    match bps {
        Some(b) if (MIN..=MAX).contains(&b) => Ok(b),
        _ => err(format!(
            "--aac-bitrate: '{s}' is not a bitrate from 32k to 320k (kbit/s: 128, 128k or 128000)"
        )),
    }
}

/// The `--print-config` line.
pub fn render(line: &mut dyn FnMut(&str, String), bps: u32) {
    line("aac-bitrate", format!("{}k", bps / 1000));
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Mode};

    fn aac(s: &str) -> Result<u32, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&args) {
            Ok(Mode::Origin(c)) => Ok(c.aac_bitrate),
            Ok(_) => Err("not the origin".into()),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn aac_bitrate_takes_kbits_or_bits_within_range() {
        assert_eq!(aac(""), Ok(128_000));
        for (arg, bps) in [("96", 96_000), ("192k", 192_000), ("64000", 64_000)] {
            assert_eq!(aac(&format!("--aac-bitrate {arg}")), Ok(bps), "{arg}");
        }
        for bad in ["8k", "400k", "x", "-1", "99999999999"] {
            let e = aac(&format!("--aac-bitrate {bad}")).unwrap_err();
            assert!(e.contains("--aac-bitrate"), "{bad}: {e}");
        }
    }
}
