//! TLS options (RTMPS/HTTPS ports, certificate, key, upstream CA) and their validation. Not yet
//! registered in the main option table (the loop does not serve TLS yet); it only parses and checks.

use std::path::PathBuf;

/// Validated TLS settings; `None` ports mean that listener is off.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsConfig {
    pub rtmps_port: Option<u16>,
    pub https_port: Option<u16>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub upstream_ca: Option<PathBuf>,
}

/// Adds the TLS options; the lead calls this when wiring TLS into the loop.
pub fn register(opts: &mut getopts::Options) {
    opts.optopt(
        "",
        "rtmps-port",
        "RTMPS listen port (needs --tls-cert)",
        "N",
    );
    opts.optopt(
        "",
        "https-port",
        "HTTPS/WSS listen port (needs --tls-cert)",
        "N",
    );
    opts.optopt("", "tls-cert", "PEM certificate chain", "FILE");
    opts.optopt("", "tls-key", "PEM private key (PKCS#8, RSA or EC)", "FILE");
    opts.optopt(
        "",
        "upstream-ca",
        "PEM CA roots for https:// upstreams",
        "FILE",
    );
}

fn port(m: &getopts::Matches, name: &str) -> Result<Option<u16>, String> {
    match m.opt_str(name) {
        None => Ok(None),
        Some(s) => match s.parse::<u16>() {
            Ok(p) if p != 0 => Ok(Some(p)),
            _ => Err(format!("--{name}: not a port number: {s:?}")),
        },
    }
}

/// Validates the options; an error is one line for the binary to print before exiting 2.
pub fn parse(m: &getopts::Matches) -> Result<TlsConfig, String> {
    let c = TlsConfig {
        rtmps_port: port(m, "rtmps-port")?,
        https_port: port(m, "https-port")?,
        cert: m.opt_str("tls-cert").map(PathBuf::from),
        key: m.opt_str("tls-key").map(PathBuf::from),
        upstream_ca: m.opt_str("upstream-ca").map(PathBuf::from),
    };
    match (&c.cert, &c.key) {
        (Some(_), None) => return Err("--tls-cert given without --tls-key".into()),
        (None, Some(_)) => return Err("--tls-key given without --tls-cert".into()),
        _ => {}
    }
    if c.cert.is_none() && (c.rtmps_port.is_some() || c.https_port.is_some()) {
        return Err("a TLS port (--rtmps-port/--https-port) needs --tls-cert and --tls-key".into());
    }
    if c.rtmps_port.is_some() && c.rtmps_port == c.https_port {
        return Err("--rtmps-port and --https-port must differ".into());
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> Result<TlsConfig, String> {
        let mut o = getopts::Options::new();
        register(&mut o);
        let m = o.parse(args).map_err(|e| e.to_string())?;
        parse(&m)
    }

    #[test]
    fn defaults_are_off() {
        assert_eq!(run(&[]).unwrap(), TlsConfig::default());
    }

    #[test]
    fn full_set_parses() {
        let c = run(&[
            "--rtmps-port",
            "1936",
            "--https-port",
            "8443",
            "--tls-cert",
            "c.pem",
            "--tls-key",
            "k.pem",
            "--upstream-ca",
            "ca.pem",
        ])
        .unwrap();
        assert_eq!(c.rtmps_port, Some(1936));
        assert_eq!(c.https_port, Some(8443));
        assert_eq!(c.cert, Some(PathBuf::from("c.pem")));
        assert_eq!(c.key, Some(PathBuf::from("k.pem")));
        assert_eq!(c.upstream_ca, Some(PathBuf::from("ca.pem")));
    }

    #[test]
    fn cert_without_key_is_rejected() {
        assert!(run(&["--tls-cert", "c.pem"])
            .unwrap_err()
            .contains("--tls-key"));
        assert!(run(&["--tls-key", "k.pem"])
            .unwrap_err()
            .contains("--tls-cert"));
    }

    #[test]
    fn tls_port_without_cert_is_rejected() {
        assert!(run(&["--rtmps-port", "1936"])
            .unwrap_err()
            .contains("needs --tls-cert"));
        assert!(run(&["--https-port", "8443"])
            .unwrap_err()
            .contains("needs --tls-cert"));
    }

    #[test]
    fn bad_ports_are_rejected() {
        let kc = ["--tls-cert", "c", "--tls-key", "k"];
        let a = [&["--rtmps-port", "0"][..], &kc].concat();
        assert!(run(&a).unwrap_err().contains("--rtmps-port"));
        let b = [&["--https-port", "x"][..], &kc].concat();
        assert!(run(&b).unwrap_err().contains("--https-port"));
        let same = [&["--rtmps-port", "9", "--https-port", "9"][..], &kc].concat();
        assert!(run(&same).unwrap_err().contains("differ"));
    }
}
