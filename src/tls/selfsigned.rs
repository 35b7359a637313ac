//! `--tls-self-signed`: a certificate for this machine's names and addresses (its host name,
//! `localhost`, every local interface address), made once with rcgen and kept in
//! `{data-dir}/.tls/`, so browsers on a LAN get a secure page (which they require for the camera)
//! with nothing installed. Later starts reuse it, so a fingerprint a class has accepted stays the
//! same. Loading it into rustls is `certs`, as for `--tls-cert`; this module only makes the files.
//! The folder starts with a dot, so no app name can collide with it, and the static file service
//! refuses it (`server::http`): the data dir is served, the key must not be.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::TlsError;

/// The folder under the data dir (never served as files).
pub const DIR: &str = ".tls";
const CERT: &str = "self-signed-cert.pem";
const KEY: &str = "self-signed-key.pem";
const NAMES: &str = "self-signed-names.txt";
/// Apple's platforms refuse TLS server certificates valid for longer, even ones a user trusts.
const VALIDITY: Duration = Duration::from_secs(825 * 86_400);
/// A certificate this close to its end is replaced at start.
const RENEW_BEFORE: Duration = Duration::from_secs(14 * 86_400);

/// The certificate in force and what the start line says about it.
#[derive(Debug)]
pub struct SelfSigned {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// SHA-256 of the certificate (DER), as browsers show it: `AB:CD:...`.
    pub fingerprint: String,
    /// The names and addresses it was made for.
    pub names: Vec<String>,
    /// Made at this start (else reused from an earlier one).
    pub made: bool,
    /// Why an earlier certificate was replaced, if it was.
    pub replaced: Option<String>,
    /// Names of this machine now that the reused certificate does not cover (an address that
    /// changed since it was made): browsers warn for those until the folder is deleted.
    pub missing: Vec<String>,
}

/// This machine's names, for the certificate: `localhost`, the loopback addresses, the host
/// name (and `NAME.local`, which phones resolve by mDNS), every interface address except IPv6
/// link-local ones (a URL cannot use them without a zone). Sorted, no duplicates.
pub fn machine_names(hostname: Option<&str>, addrs: &[IpAddr]) -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    if let Some(h) = hostname.map(|h| h.trim().to_ascii_lowercase()) {
        if is_dns_name(&h) {
            if !h.contains('.') {
                names.push(format!("{h}.local"));
            }
            names.push(h);
        }
    }
    let mut ips: Vec<IpAddr> = addrs
        .iter()
        .copied()
        .filter(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_unspecified(),
            IpAddr::V6(v6) => !v6.is_unspecified() && (v6.segments()[0] & 0xffc0) != 0xfe80,
        })
        .collect();
    ips.push(IpAddr::from([127, 0, 0, 1]));
    ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
    ips.sort();
    ips.dedup();
    names.sort();
    names.dedup();
    names.extend(ips.iter().map(|ip| ip.to_string()));
    names
}

/// Letters, digits, '-' and '.', labels of 1-63 bytes: what a certificate's DNS name may hold.
fn is_dns_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// The certificate in `data_dir/.tls/`: reused when a good one is there, else made for `names`.
pub fn ensure(data_dir: &Path, names: &[String], now: SystemTime) -> Result<SelfSigned, TlsError> {
    let dir = data_dir.join(DIR);
    let (cert, key, meta) = (dir.join(CERT), dir.join(KEY), dir.join(NAMES));
    let replaced = match reuse(&cert, &key, &meta, now) {
        Ok(Some((fingerprint, made_for))) => {
            let missing = names
                .iter()
                .filter(|n| !made_for.contains(n))
                .cloned()
                .collect();
            return Ok(SelfSigned {
                cert,
                key,
                fingerprint,
                names: made_for,
                made: false,
                replaced: None,
                missing,
            });
        }
        Ok(None) => None,
        Err(why) => Some(why),
    };
    std::fs::create_dir_all(&dir).map_err(|e| TlsError::Read(dir.clone(), e))?;
    let (cert_pem, key_pem, not_after) = make(names, now)?;
    // The key first and the names last: a start that dies in between finds no usable set and
    // makes a new one, never a certificate without its key.
    write_file(&key, key_pem.as_bytes(), true)?;
    write_file(&cert, cert_pem.as_bytes(), false)?;
    let mut m = format!(
        "# rtmpd --tls-self-signed: what {CERT} was made for; delete this folder to make a new one\n\
         not-after {not_after}\n"
    );
    for n in names {
        m.push_str(&format!("name {n}\n"));
    }
    write_file(&meta, m.as_bytes(), false)?;
    Ok(SelfSigned {
        fingerprint: fingerprint(cert_pem.as_bytes(), &cert)?,
        cert,
        key,
        names: names.to_vec(),
        made: true,
        replaced,
        missing: Vec::new(),
    })
}

/// `Ok(None)`: nothing there yet. `Err(why)`: something there that will not do (the reason is
/// logged when a new one replaces it).
fn reuse(
    cert: &Path,
    key: &Path,
    meta: &Path,
    now: SystemTime,
) -> Result<Option<(String, Vec<String>)>, String> {
    if !cert.exists() && !key.exists() {
        return Ok(None);
    }
    let cert_pem = std::fs::read(cert).map_err(|e| format!("{}: {e}", cert.display()))?;
    let key_pem = std::fs::read(key).map_err(|e| format!("{}: {e}", key.display()))?;
    super::certs::config_from_pem(&cert_pem, &key_pem, cert, key).map_err(|e| e.to_string())?;
    let meta_text =
        std::fs::read_to_string(meta).map_err(|e| format!("{}: {e}", meta.display()))?;
    let (not_after, names) = parse_meta(&meta_text);
    let not_after = not_after.ok_or_else(|| format!("{}: no not-after line", meta.display()))?;
    let now_s = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    if now_s + RENEW_BEFORE.as_secs() >= not_after {
        return Err("it expires within 14 days".into());
    }
    let fp = fingerprint(&cert_pem, cert).map_err(|e| e.to_string())?;
    Ok(Some((fp, names)))
}

/// `not-after SECONDS` and `name N` lines; anything else is ignored.
fn parse_meta(text: &str) -> (Option<u64>, Vec<String>) {
    let mut not_after = None;
    let mut names = Vec::new();
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("not-after ") {
            not_after = v.trim().parse().ok();
        } else if let Some(n) = line.strip_prefix("name ") {
            names.push(n.trim().to_string());
        }
    }
    (not_after, names)
}

/// A new ECDSA P-256 key and a certificate for `names` (server authentication), valid from a
/// day ago (clocks on a LAN disagree) for 825 days: (certificate PEM, key PEM, not-after seconds).
fn make(names: &[String], now: SystemTime) -> Result<(String, String, u64), TlsError> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose, SanType, PKCS_ECDSA_P256_SHA256,
    };
    use ring::rand::SecureRandom;

    let fail = |what: &str, e: rcgen::Error| TlsError::Make(format!("{what}: {e}"));
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| fail("key", e))?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(|e| fail("params", e))?;
    for n in names {
        let san = match n.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into().map_err(|e| fail(n, e))?),
        };
        params.subject_alt_names.push(san);
    }
    let mut dn = DistinguishedName::new();
    let host = names
        .iter()
        .find(|n| *n != "localhost" && n.parse::<IpAddr>().is_err());
    dn.push(
        DnType::CommonName,
        format!(
            "rtmpd self-signed {}",
            host.map_or("localhost", |h| h.as_str())
        ),
    );
    params.distinguished_name = dn;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let start = time::OffsetDateTime::from(now);
    params.not_before = start - time::Duration::days(1);
    let end = start + VALIDITY;
    params.not_after = end;
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut serial)
        .map_err(|_| TlsError::Make("no random bytes for the serial number".into()))?;
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(serial.to_vec().into());
    let cert = params
        .self_signed(&key)
        .map_err(|e| fail("certificate", e))?;
    let pem = |label, der: &[u8]| {
        pem_rfc7468::encode_string(label, pem_rfc7468::LineEnding::LF, der)
            .map_err(|e| TlsError::Make(format!("PEM: {e}")))
    };
    let not_after = u64::try_from(end.unix_timestamp()).unwrap_or(0);
    Ok((
        pem("CERTIFICATE", cert.der())?,
        pem("PRIVATE KEY", &key.serialize_der())?,
        not_after,
    ))
}

/// SHA-256 of the first certificate in `pem`, as `AB:CD:...`.
pub fn fingerprint(pem: &[u8], path: &Path) -> Result<String, TlsError> {
    use sha2::Digest;
    let der = CertificateDer::pem_slice_iter(pem)
        .next()
        .ok_or_else(|| TlsError::Pem(path.into(), "no CERTIFICATE in the file".into()))?
        .map_err(|e| TlsError::Pem(path.into(), format!("bad PEM: {e}")))?;
    let digest = sha2::Sha256::digest(der.as_ref());
    Ok(digest
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":"))
}

/// Writes through a temporary name and renames, so a reader never sees half a file; the key is
/// readable by its owner only.
fn write_file(path: &Path, data: &[u8], private: bool) -> Result<(), TlsError> {
    let tmp = path.with_extension("tmp");
    let io = |e| TlsError::Make(format!("cannot write {}: {e}", path.display()));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut f = opts.open(&tmp).map_err(io)?;
    f.write_all(data).and_then(|_| f.sync_all()).map_err(io)?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io)
}

/// The host name the OS reports, if any.
pub fn hostname() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is writable for its length; the name is NUL-terminated within it
        // on success (truncated names are cut at the first NUL or the end below).
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        std::str::from_utf8(&buf[..end]).ok().map(str::to_string)
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME").ok()
    }
}

/// Every address of a local interface that is up (Unix: getifaddrs). Elsewhere: the address
/// the system would send from towards the internet, for IPv4 and IPv6 (a UDP socket connected,
/// nothing sent).
pub fn interface_addrs() -> Vec<IpAddr> {
    #[cfg(unix)]
    {
        unix_interface_addrs()
    }
    #[cfg(not(unix))]
    {
        let mut out = Vec::new();
        for (bind, to) in [("0.0.0.0:0", "192.0.2.1:9"), ("[::]:0", "[2001:db8::1]:9")] {
            if let Ok(s) = std::net::UdpSocket::bind(bind) {
                if s.connect(to).is_ok() {
                    if let Ok(a) = s.local_addr() {
                        out.push(a.ip());
                    }
                }
            }
        }
        out
    }
}

#[cfg(unix)]
fn unix_interface_addrs() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list we only read and then free once.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return out;
    }
    let mut p = head;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        let up = ifa.ifa_flags & (libc::IFF_UP as libc::c_uint) != 0;
        if ifa.ifa_addr.is_null() || !up {
            continue;
        }
        // SAFETY: `ifa_addr` is non-null and points at a sockaddr whose family says its type.
        let family = i32::from(unsafe { (*ifa.ifa_addr).sa_family });
        if family == libc::AF_INET {
            // SAFETY: an AF_INET address is a sockaddr_in.
            let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
            out.push(IpAddr::from(
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
            ));
        } else if family == libc::AF_INET6 {
            // SAFETY: an AF_INET6 address is a sockaddr_in6.
            let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
            out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
        }
    }
    // SAFETY: `head` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::TempDir;

    fn names() -> Vec<String> {
        machine_names(
            Some("Classroom-PC"),
            &[
                "192.168.1.20".parse().unwrap(),
                "fe80::1".parse().unwrap(),
                "2001:db8::5".parse().unwrap(),
                "127.0.0.1".parse().unwrap(),
                "0.0.0.0".parse().unwrap(),
            ],
        )
    }

    #[test]
    fn machine_names_cover_host_mdns_loopback_and_interfaces() {
        assert_eq!(
            names(),
            [
                "classroom-pc",
                "classroom-pc.local",
                "localhost",
                "127.0.0.1",
                "192.168.1.20",
                "::1",
                "2001:db8::5"
            ]
        );
        // A name a certificate cannot hold is left out; a dotted one gets no ".local".
        let n = machine_names(Some("bad name"), &[]);
        assert_eq!(n, ["localhost", "127.0.0.1", "::1"]);
        let n = machine_names(Some("pc.school.lan"), &[]);
        assert_eq!(n[..2], ["localhost", "pc.school.lan"]);
    }

    /// A rustls client that trusts exactly `cert_pem` reaches a server with our pair, by name
    /// and by address; a name not in the certificate is refused.
    fn handshake(cert_pem: &[u8], server: Arc<rustls::ServerConfig>, name: &str) -> bool {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(cert_pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let sni = rustls_pki_types::ServerName::try_from(name.to_string()).unwrap();
        let mut c = rustls::ClientConnection::new(Arc::new(client), sni).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            if s.read_tls(&mut &buf[..]).is_err() || s.process_new_packets().is_err() {
                return false;
            }
            let mut back = Vec::new();
            while s.wants_write() {
                s.write_tls(&mut back).unwrap();
            }
            if c.read_tls(&mut &back[..]).is_err() || c.process_new_packets().is_err() {
                return false;
            }
            if !c.is_handshaking() && !s.is_handshaking() {
                return true;
            }
        }
        false
    }
    use std::sync::Arc;

    #[test]
    fn made_once_then_reused_with_the_same_fingerprint() {
        let t = TempDir::new("selfsigned");
        let now = SystemTime::now();
        let first = ensure(t.path(), &names(), now).unwrap();
        assert!(first.made && first.replaced.is_none());
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1, "{}", first.fingerprint);
        let pem = std::fs::read(&first.cert).unwrap();
        assert_eq!(fingerprint(&pem, &first.cert).unwrap(), first.fingerprint);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&first.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "the key is private: {mode:o}");
        }
        let config = super::super::certs::load(&first.cert, &first.key).unwrap();
        for name in ["localhost", "classroom-pc.local", "192.168.1.20", "::1"] {
            assert!(handshake(&pem, config.clone(), name), "{name}");
        }
        assert!(!handshake(&pem, config, "other.example"));

        // A later start, now on another network: the same certificate, the new address named.
        let mut later = names();
        later.push("10.0.0.7".into());
        let again = ensure(t.path(), &later, now + Duration::from_secs(3600)).unwrap();
        assert!(!again.made);
        assert_eq!(again.fingerprint, first.fingerprint);
        assert_eq!(again.names, names());
        assert_eq!(again.missing, ["10.0.0.7"]);
    }

    #[test]
    fn a_broken_or_expiring_certificate_is_replaced() {
        let t = TempDir::new("selfsigned-bad");
        let now = SystemTime::now();
        let first = ensure(t.path(), &names(), now).unwrap();
        // Near its end: replaced, with the reason.
        let late = now + VALIDITY - Duration::from_secs(86_400);
        let renewed = ensure(t.path(), &names(), late).unwrap();
        assert!(renewed.made);
        assert!(renewed.replaced.unwrap().contains("expires"));
        assert_ne!(renewed.fingerprint, first.fingerprint);
        // A key that no longer matches (or garbage): replaced, never served.
        std::fs::write(&renewed.key, b"-----BEGIN PRIVATE KEY-----\ngarbage\n").unwrap();
        let fixed = ensure(t.path(), &names(), now).unwrap();
        assert!(fixed.made && fixed.replaced.is_some());
        super::super::certs::load(&fixed.cert, &fixed.key).unwrap();
        // A certificate with no key beside it: a new pair.
        std::fs::remove_file(&fixed.key).unwrap();
        assert!(ensure(t.path(), &names(), now).unwrap().made);
    }

    #[test]
    fn the_names_file_is_read_leniently() {
        let (na, n) = parse_meta("# c\nnot-after 17\nname a\n\nname  b \njunk\n");
        assert_eq!(na, Some(17));
        assert_eq!(n, ["a", "b"]);
        assert_eq!(parse_meta("not-after x").0, None);
    }

    #[test]
    fn interface_addresses_include_loopback() {
        // Every machine running the tests has a loopback interface that is up.
        let a = interface_addrs();
        #[cfg(unix)]
        assert!(a.iter().any(|ip| ip.is_loopback()), "{a:?}");
        let _ = a;
        assert!(hostname().is_some_and(|h| !h.is_empty()));
    }
}
