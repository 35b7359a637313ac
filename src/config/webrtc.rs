//! The WebRTC (WHEP) options of the origin: `--webrtc-port`, `--no-webrtc` and
//! `--webrtc-public-ip`, their `--help` rows, validation and `--print-config` lines. What they do
//! is `server::webrtc` (the wiring) and `crate::webrtc` (the sessions).

use std::net::IpAddr;

use getopts::Options;

use super::{err, port, ConfigError};

/// WHEP playback; `None` in `OriginConfig` with `--no-webrtc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebRtcConfig {
    /// UDP (ICE-lite) and, with the same number, ICE-TCP; 0 picks a free port.
    pub port: u16,
    /// Extra candidate addresses (a NAT's public address), after the HTTP request's local one.
    pub public_ips: Vec<IpAddr>,
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
    Ok((!m.opt_present("no-webrtc")).then_some(WebRtcConfig { port, public_ips }))
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
        for bad in [
            "--webrtc-port 70000",
            "--webrtc-public-ip nowhere",
            "--webrtc-public-ip 0.0.0.0",
        ] {
            let e = origin(bad).unwrap_err();
            assert!(e.contains("--webrtc-"), "{bad}: {e}");
        }
    }
}
