//! The SRT ingest and playback options of the origin: `--srt-port`, `--srt-latency` and
//! `--srt-passphrase`, their `--help` rows, validation and `--print-config` lines. What they do
//! is `crate::srt` (the listener) and `server::srt` (the wiring).

use std::time::Duration;

use getopts::Options;

use super::{err, num, port, ConfigError};

/// The SRT listener of the origin; `None` in `OriginConfig` with `--srt-port 0`.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtConfig {
    pub port: u16,
    /// Our TSBPD latency (the larger of ours and the caller's is used).
    pub latency: Duration,
    /// AES passphrase, 10 to 79 bytes; `None`: callers must not encrypt.
    pub passphrase: Option<String>,
}

impl std::fmt::Debug for SrtConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SrtConfig")
            .field("port", &self.port)
            .field("latency", &self.latency)
            .field("passphrase", &self.passphrase.as_ref().map(|_| "***"))
            .finish()
    }
}

const DEFAULT_PORT: u16 = 8890;
const DEFAULT_LATENCY_MS: u64 = 120;

pub fn options(opts: &mut Options) {
    opts.optopt(
        "",
        "srt-port",
        "SRT publish and play (UDP; streamid publish:app/stream or #!::r=app/stream,m=publish); 0 turns it off [8890]",
        "N",
    );
    opts.optopt(
        "",
        "srt-latency",
        "SRT receive latency in ms, 20-8000 (the larger of ours and the caller's wins) [120]",
        "MS",
    );
    opts.optopt(
        "",
        "srt-passphrase",
        "SRT AES passphrase, 10-79 characters; callers must then encrypt [none]",
        "P",
    );
}

pub fn config(m: &getopts::Matches) -> Result<Option<SrtConfig>, ConfigError> {
    let latency_ms: u64 = num(m, "srt-latency", DEFAULT_LATENCY_MS)?;
    if !(20..=8000).contains(&latency_ms) {
        return err("--srt-latency: between 20 and 8000 ms");
    }
    let passphrase = m.opt_str("srt-passphrase");
    if let Some(p) = &passphrase {
        if !(10..=79).contains(&p.len()) {
            return err(format!(
                "--srt-passphrase: 10 to 79 characters (libsrt's rule), not {}",
                p.len()
            ));
        }
    }
    let port = port(m, "srt-port", DEFAULT_PORT)?;
    Ok((port != 0).then_some(SrtConfig {
        port,
        latency: Duration::from_millis(latency_ms),
        passphrase,
    }))
}

/// `--print-config` lines; the passphrase is never shown.
pub fn render(line: &mut dyn FnMut(&str, String), c: &Option<SrtConfig>) {
    match c {
        None => line("srt-port", "0 (off)".into()),
        Some(c) => {
            line("srt-port", c.port.to_string());
            line("srt-latency", c.latency.as_millis().to_string());
            let p = if c.passphrase.is_some() {
                "(set)"
            } else {
                "(none)"
            };
            line("srt-passphrase", p.into());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse, Mode};

    fn origin(s: &str) -> Result<super::super::OriginConfig, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&args) {
            Ok(Mode::Origin(c)) => Ok(c),
            Ok(_) => Err("not the origin".into()),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn defaults_and_values() {
        let c = origin("").unwrap().srt.expect("on by default");
        assert_eq!((c.port, c.latency.as_millis()), (8890, 120));
        assert_eq!(c.passphrase, None);
        assert_eq!(origin("--srt-port 0").unwrap().srt, None, "0 turns it off");
        let c = origin("--srt-port 9000 --srt-latency 400 --srt-passphrase 0123456789")
            .unwrap()
            .srt
            .unwrap();
        assert_eq!((c.port, c.latency.as_millis()), (9000, 400));
        assert_eq!(c.passphrase.as_deref(), Some("0123456789"));
        assert!(!format!("{c:?}").contains("0123456789"), "Debug hides it");
    }

    #[test]
    fn bad_values_name_the_option() {
        let long = "x".repeat(80);
        for (bad, option) in [
            ("--srt-passphrase short".to_string(), "--srt-passphrase"),
            (format!("--srt-passphrase {long}"), "--srt-passphrase"),
            ("--srt-latency 5".into(), "--srt-latency"),
            ("--srt-latency x".into(), "--srt-latency"),
            ("--srt-port 70000".into(), "--srt-port"),
        ] {
            let e = origin(&bad).unwrap_err();
            assert!(e.contains(option), "{bad}: {e}");
        }
    }

    #[test]
    fn print_config_shows_the_settings_never_the_passphrase() {
        let args: Vec<String> = "--srt-passphrase 0123456789abc --print-config"
            .split_whitespace()
            .map(String::from)
            .collect();
        let Ok(Mode::PrintConfig(text)) = parse(&args) else {
            panic!()
        };
        let has = |k: &str, v: &str| text.lines().any(|l| l.split_whitespace().eq([k, v]));
        assert!(has("srt-port", "8890"), "{text}");
        assert!(has("srt-latency", "120"), "{text}");
        assert!(has("srt-passphrase", "(set)"), "{text}");
        assert!(!text.contains("0123456789abc"), "{text}");
    }
}
