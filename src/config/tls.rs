//! TLS options (issue 16 point 1): `--rtmps-port` (origin only), `--https-port`, `--tls-cert`,
//! `--tls-key`; their `--help` rows, validation and `--print-config` lines. Loading the files
//! and serving TLS is `crate::tls` and `server::tlsio`.

use std::path::PathBuf;

use getopts::Options;

use super::{err, ConfigError};
pub use crate::tls::TlsConfig;

/// Which modes have which TLS listeners: only the origin takes RTMP.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum TlsSet {
    Origin,
    /// The FLV gateway and the file gateway: HTTPS only.
    HttpsOnly,
}

pub fn options(opts: &mut Options, set: TlsSet, https_serves: &str) {
    if set == TlsSet::Origin {
        opts.optopt(
            "",
            "rtmps-port",
            "RTMPS (RTMP over TLS) publish and play, e.g. 1936 or 443; 0 picks a free port; needs --tls-cert [off]",
            "N",
        );
    }
    opts.optopt(
        "",
        "https-port",
        &format!("{https_serves} over TLS (HTTPS, WSS), e.g. 8443; 0 picks a free port; needs --tls-cert [off]"),
        "N",
    );
    opts.optopt(
        "",
        "tls-cert",
        "PEM certificate chain, leaf first (e.g. /etc/letsencrypt/live/DOMAIN/fullchain.pem); re-read when it changes [none]",
        "FILE",
    );
    opts.optopt(
        "",
        "tls-key",
        "PEM private key of --tls-cert: PKCS#8, RSA or EC (e.g. .../privkey.pem) [none]",
        "FILE",
    );
    if set == TlsSet::Origin {
        opts.optflag(
            "",
            "tls-self-signed",
            "instead of --tls-cert and --tls-key: a certificate for this machine's names and addresses, made once and kept in DATA-DIR/.tls/ (its SHA-256 fingerprint printed at start); turns on --https-port 8443 unless given",
        );
    }
}

/// The HTTPS port `--tls-self-signed` turns on when `--https-port` is not given.
pub const SELF_SIGNED_HTTPS_PORT: u16 = 8443;

fn port(m: &getopts::Matches, name: &str) -> Result<Option<u16>, ConfigError> {
    match m.opt_str(name) {
        None => Ok(None),
        Some(s) => match s.parse::<u16>() {
            Ok(p) => Ok(Some(p)),
            _ => err(format!("--{name}: '{s}' is not a port (0-65535)")),
        },
    }
}

/// Validates the options; the files are read at start (a bad pair is fatal then).
pub fn config(m: &getopts::Matches, set: TlsSet) -> Result<TlsConfig, ConfigError> {
    let c = TlsConfig {
        rtmps_port: if set == TlsSet::Origin {
            port(m, "rtmps-port")?
        } else {
            None
        },
        https_port: port(m, "https-port")?,
        cert: m.opt_str("tls-cert").map(PathBuf::from),
        key: m.opt_str("tls-key").map(PathBuf::from),
        self_signed: set == TlsSet::Origin && m.opt_present("tls-self-signed"),
    };
    if c.self_signed {
        if c.cert.is_some() || c.key.is_some() {
            return err("--tls-self-signed makes its own certificate: give it or --tls-cert/--tls-key, not both");
        }
        let https_port = c.https_port.or(Some(SELF_SIGNED_HTTPS_PORT));
        if c.rtmps_port.is_some_and(|p| p != 0) && c.rtmps_port == https_port {
            return err("--rtmps-port and --https-port must differ");
        }
        return Ok(TlsConfig { https_port, ..c });
    }
    match (&c.cert, &c.key) {
        (Some(_), None) => return err("--tls-cert given without --tls-key"),
        (None, Some(_)) => return err("--tls-key given without --tls-cert"),
        _ => {}
    }
    if c.cert.is_none() && (c.rtmps_port.is_some() || c.https_port.is_some()) {
        return err("a TLS port (--rtmps-port/--https-port) needs --tls-cert and --tls-key");
    }
    if c.cert.is_some() && c.rtmps_port.is_none() && c.https_port.is_none() {
        return err("--tls-cert is given but no TLS port (--rtmps-port or --https-port)");
    }
    if c.rtmps_port.is_some_and(|p| p != 0) && c.rtmps_port == c.https_port {
        return err("--rtmps-port and --https-port must differ");
    }
    Ok(c)
}

/// `--print-config` lines.
pub fn render(line: &mut dyn FnMut(&str, String), set: TlsSet, c: &TlsConfig) {
    let port = |p: Option<u16>| p.map_or("(off)".to_string(), |p| p.to_string());
    let file = |f: &Option<PathBuf>| {
        f.as_ref()
            .map_or("(none)".to_string(), |f| f.display().to_string())
    };
    if set == TlsSet::Origin {
        line("rtmps-port", port(c.rtmps_port));
    }
    line("https-port", port(c.https_port));
    line("tls-cert", file(&c.cert));
    line("tls-key", file(&c.key));
    if set == TlsSet::Origin {
        line("tls-self-signed", c.self_signed.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(set: TlsSet, args: &[&str]) -> Result<TlsConfig, String> {
        let mut o = getopts::Options::new();
        options(&mut o, set, "x");
        let m = o.parse(args).map_err(|e| e.to_string())?;
        config(&m, set).map_err(|e| e.0)
    }

    #[test]
    fn defaults_are_off() {
        assert_eq!(run(TlsSet::Origin, &[]).unwrap(), TlsConfig::default());
    }

    #[test]
    fn full_set_parses() {
        let c = run(
            TlsSet::Origin,
            &[
                "--rtmps-port",
                "1936",
                "--https-port",
                "8443",
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
            ],
        )
        .unwrap();
        assert_eq!(c.rtmps_port, Some(1936));
        assert_eq!(c.https_port, Some(8443));
        assert_eq!(c.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.key, Some(PathBuf::from("k.pem")));
    }

    #[test]
    fn port_zero_picks_a_free_port_for_both() {
        let c = run(
            TlsSet::Origin,
            &[
                "--rtmps-port",
                "0",
                "--https-port",
                "0",
                "--tls-cert",
                "c",
                "--tls-key",
                "k",
            ],
        )
        .unwrap();
        assert_eq!((c.rtmps_port, c.https_port), (Some(0), Some(0)));
    }

    #[test]
    fn cert_without_key_is_rejected() {
        let e = run(
            TlsSet::Origin,
            &["--tls-cert", "c.pem", "--https-port", "1"],
        )
        .unwrap_err();
        assert!(e.contains("--tls-key"), "{e}");
        let e = run(TlsSet::Origin, &["--tls-key", "k.pem", "--https-port", "1"]).unwrap_err();
        assert!(e.contains("--tls-cert"), "{e}");
    }

    #[test]
    fn tls_port_without_cert_is_rejected_and_cert_without_port_too() {
        for a in [["--rtmps-port", "1936"], ["--https-port", "8443"]] {
            let e = run(TlsSet::Origin, &a).unwrap_err();
            assert!(e.contains("needs --tls-cert"), "{e}");
        }
        let e = run(TlsSet::Origin, &["--tls-cert", "c", "--tls-key", "k"]).unwrap_err();
        assert!(e.contains("no TLS port"), "{e}");
    }

    #[test]
    fn bad_ports_are_rejected() {
        let kc = ["--tls-cert", "c", "--tls-key", "k"];
        let a = [&["--rtmps-port", "70000"][..], &kc].concat();
        assert!(run(TlsSet::Origin, &a)
            .unwrap_err()
            .contains("--rtmps-port"));
        let b = [&["--https-port", "x"][..], &kc].concat();
        assert!(run(TlsSet::Origin, &b)
            .unwrap_err()
            .contains("--https-port"));
        let same = [&["--rtmps-port", "9", "--https-port", "9"][..], &kc].concat();
        assert!(run(TlsSet::Origin, &same).unwrap_err().contains("differ"));
    }

    #[test]
    fn self_signed_turns_https_on_and_excludes_cert_files() {
        let c = run(TlsSet::Origin, &["--tls-self-signed"]).unwrap();
        assert!(c.self_signed);
        assert_eq!((c.https_port, c.rtmps_port), (Some(8443), None));
        assert_eq!(c.cert, None);
        let c = run(
            TlsSet::Origin,
            &[
                "--tls-self-signed",
                "--https-port",
                "0",
                "--rtmps-port",
                "0",
            ],
        )
        .unwrap();
        assert_eq!((c.https_port, c.rtmps_port), (Some(0), Some(0)));
        let e = run(
            TlsSet::Origin,
            &["--tls-self-signed", "--tls-cert", "c", "--tls-key", "k"],
        )
        .unwrap_err();
        assert!(e.contains("not both"), "{e}");
        let e = run(
            TlsSet::Origin,
            &["--tls-self-signed", "--rtmps-port", "8443"],
        )
        .unwrap_err();
        assert!(e.contains("differ"), "{e}");
        // The gateways have no data dir to keep it in.
        assert!(run(TlsSet::HttpsOnly, &["--tls-self-signed"]).is_err());
    }

    #[test]
    fn gateways_have_no_rtmps() {
        let e = run(TlsSet::HttpsOnly, &["--rtmps-port", "1"]).unwrap_err();
        assert!(e.contains("rtmps-port"), "{e}");
    }
}
