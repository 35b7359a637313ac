//! The WebRTC (WHEP) options of the origin: `--webrtc-port`, `--no-webrtc` and
//! `--webrtc-public-ip`, their `--help` rows, validation and `--print-config` lines. What they do
//! is `server::webrtc` (the wiring) and `crate::webrtc` (the sessions).

use std::net::IpAddr;
use std::time::Duration;

use getopts::Options;

use super::{err, port, ConfigError};

/// WHEP playback; `None` in `OriginConfig` with `--no-webrtc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// UDP (ICE-lite) and, with the same number, ICE-TCP; 0 picks a free port.
    pub port: u16,
    /// Extra candidate addresses (a NAT's public address), after the HTTP request's local one.
    pub public_ips: Vec<IpAddr>,
    /// WHIP: ask publishers for a keyframe when none came for this long; `None` (0) never.
    pub keyframe_interval: Option<Duration>,
    /// `--opus-bitrate` in bits per second for the audio bridge (AAC streams' WebRTC viewers);
    /// `None`: 128 kbit/s stereo, 64 kbit/s mono.
    pub opus_bitrate: Option<u32>,
}

pub fn options(opts: &mut Options) {
    opts.optopt(
        "",
        "webrtc-port",
        "WebRTC (WHEP) media, UDP and ICE-TCP on one number; 0 picks a free port [8189]",
        "N",
    );
    opts.optflag(
        "",
        "no-webrtc",
        "no WebRTC playback (POST .../whep answers 404)",
    );
    opts.optmulti(
        "",
        "webrtc-public-ip",
        "an address WHEP viewers can reach us on, offered besides the HTTP request's (repeatable)",
        "ADDR",
    );
    opts.optopt(
        "",
        "webrtc-keyframe-interval",
        "WHIP: ask a publisher for a keyframe (PLI) when none came for this many seconds; 0 never [2]",
        "SECS",
    );
    opts.optopt(
        "",
        "opus-bitrate",
        "Opus bitrate for WebRTC viewers of AAC streams (the audio bridge), 6k-256k \
         [128k stereo, 64k mono]",
        "RATE",
    );
}

/// `--opus-bitrate`: kbit/s as `96`, `96k` or `96000`, from 6k to 256k.
fn opus_bitrate(m: &getopts::Matches) -> Result<Option<u32>, ConfigError> {
    let Some(s) = m.opt_str("opus-bitrate") else {
        return Ok(None);
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
        Some(b) if (6_000..=crate::audio::aac_opus::MAX_OPUS_BITRATE).contains(&b) => Ok(Some(b)),
        _ => err(format!(
            "--opus-bitrate: '{s}' is not a bitrate from 6k to 256k (kbit/s: 128, 128k or 128000)"
        )),
    }
}

pub fn config(m: &getopts::Matches) -> Result<Option<WebRtcConfig>, ConfigError> {
    let port = port(m, "webrtc-port", crate::webrtc::DEFAULT_PORT)?;
    let mut public_ips = Vec::new();
    for s in m.opt_strs("webrtc-public-ip") {
        let ip: IpAddr = match s.parse() {
            Ok(ip) => ip,
            Err(_) => return err(format!("--webrtc-public-ip: '{s}' is not an IP address")),
        };
        if ip.is_unspecified() || ip.is_multicast() {
            return err(format!(
                "--webrtc-public-ip: '{s}' cannot be reached (unspecified or multicast)"
            ));
        }
        if !public_ips.contains(&ip) {
            public_ips.push(ip);
        }
    }
    let keyframe_interval = match m.opt_str("webrtc-keyframe-interval") {
        None => Some(Duration::from_secs(2)),
        Some(v) => match v.parse::<f64>() {
            Ok(0.0) => None,
            Ok(s) if (0.1..=3600.0).contains(&s) => Some(Duration::from_secs_f64(s)),
            _ => {
                return err(format!(
                    "--webrtc-keyframe-interval: '{v}' is not 0 or a number of seconds from 0.1 to 3600"
                ))
            }
        },
    };
    let opus_bitrate = opus_bitrate(m)?;
    Ok((!m.opt_present("no-webrtc")).then_some(WebRtcConfig {
        port,
        public_ips,
        keyframe_interval,
        opus_bitrate,
    }))
}

/// `--print-config` lines.
pub fn render(line: &mut dyn FnMut(&str, String), c: &Option<WebRtcConfig>) {
    line("no-webrtc", c.is_none().to_string());
    let port = c.as_ref().map_or(crate::webrtc::DEFAULT_PORT, |c| c.port);
    line("webrtc-port", port.to_string());
    let ips = c.as_ref().map_or(Vec::new(), |c| {
        c.public_ips.iter().map(|i| i.to_string()).collect()
    });
    let ips = if ips.is_empty() {
        "(none)".to_string()
    } else {
        ips.join(" ")
    };
    line("webrtc-public-ip", ips);
    let k = c
        .as_ref()
        .map_or(Some(Duration::from_secs(2)), |c| c.keyframe_interval);
    line(
        "webrtc-keyframe-interval",
        k.map_or("0".into(), |d| d.as_secs_f64().to_string()),
    );
    let opus = c
        .as_ref()
        .and_then(|c| c.opus_bitrate)
        .map_or("(128k stereo, 64k mono)".to_string(), |b| {
            format!("{}k", b / 1000)
        });
    line("opus-bitrate", opus);
}

#[cfg(test)]
mod tests {
    use crate::config::{parse, Mode};

    fn origin(s: &str) -> Result<crate::config::OriginConfig, String> {
        let args: Vec<String> = s.split_whitespace().map(String::from).collect();
        match parse(&args) {
            Ok(Mode::Origin(c)) => Ok(c),
            Ok(_) => Err("not the origin".into()),
            Err(e) => Err(e.0),
        }
    }

    #[test]
    fn webrtc_options() {
        let c = origin("").unwrap().webrtc.unwrap();
        assert_eq!((c.port, c.public_ips.len()), (8189, 0));
        let c =
            origin("--webrtc-port 0 --webrtc-public-ip 203.0.113.7 --webrtc-public-ip 2001:db8::1")
                .unwrap()
                .webrtc
                .unwrap();
        assert_eq!(c.port, 0);
        assert_eq!(c.public_ips.len(), 2);
        assert!(origin("--no-webrtc").unwrap().webrtc.is_none());
        let k = |s: &str| origin(s).unwrap().webrtc.unwrap().keyframe_interval;
        assert_eq!(k(""), Some(std::time::Duration::from_secs(2)));
        assert_eq!(k("--webrtc-keyframe-interval 0"), None);
        assert_eq!(
            k("--webrtc-keyframe-interval 0.5"),
            Some(std::time::Duration::from_millis(500))
        );
        assert_eq!(c.opus_bitrate, None);
        for (arg, bps) in [("96", 96_000), ("192k", 192_000), ("256000", 256_000)] {
            let c = origin(&format!("--opus-bitrate {arg}"))
                .unwrap()
                .webrtc
                .unwrap();
            assert_eq!(c.opus_bitrate, Some(bps), "{arg}");
        }
        for bad in [
            "--webrtc-keyframe-interval -1",
            "--webrtc-keyframe-interval 0.01",
            "--webrtc-keyframe-interval x",
            "--webrtc-port 70000",
            "--webrtc-public-ip nowhere",
            "--webrtc-public-ip 0.0.0.0",
            "--opus-bitrate 300k",
            "--opus-bitrate 5",
            "--opus-bitrate lots",
        ] {
            let e = origin(bad).unwrap_err();
            assert!(
                e.contains("--webrtc-") || e.contains("--opus-"),
                "{bad}: {e}"
            );
        }
    }
}
