//! Credentials compared without leaking through timing: a constant-time byte comparison, HMAC-SHA256
//! (RustCrypto's `hmac` over `sha2`) and the signed-URL check `sign = HMAC-SHA256(S,
//! "{app}/{stream}:{expires}")`. No clock reads: the caller passes `now`.

/// True when `a == b`, in time that depends only on the lengths: every byte is looked at, and the
/// result is folded without an early exit. A length difference is not hidden (the secret's length
/// is not the secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() != b.len()) as u8;
    // Compare against `b` cycled so a short guess still costs a pass over itself.
    if !b.is_empty() {
        for (i, x) in a.iter().enumerate() {
            diff |= x ^ b[i % b.len()];
        }
    }
    // black_box keeps the optimiser from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

fn mac(key: &[u8], msg: &[u8]) -> HmacSha256 {
    use hmac::{KeyInit, Mac};
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac
}

/// HMAC-SHA256 of `msg` under `key`.
pub fn hmac_sha256(key: &[u8], msg: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    mac(key, msg).finalize().into_bytes().into()
}

/// Lowercase hex, what `openssl dgst` prints.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// 64 hex digits (either case) -> 32 bytes.
fn from_hex32(s: &str) -> Option<[u8; 32]> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let d = |c: u8| (c as char).to_digit(16).map(|v| v as u8);
        out[i] = d(pair[0])? << 4 | d(pair[1])?;
    }
    Some(out)
}

/// The message a signed URL's signature covers.
pub fn signed_message(app: &str, stream: &str, expires: &str) -> String {
    format!("{app}/{stream}:{expires}")
}

/// The `sign` value for `app/stream` valid until `expires` (what a web app hands out).
pub fn sign(secret: &[u8], app: &str, stream: &str, expires: u64) -> String {
    let msg = signed_message(app, stream, &expires.to_string());
    to_hex(&hmac_sha256(secret, msg.as_bytes()))
}

/// Why a signed URL is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignError {
    /// `expires` is not a decimal number of seconds.
    BadExpires,
    /// `sign` is not 64 hex digits, or does not match.
    Mismatch,
    /// The signature matches but `now` is past `expires`.
    Expired,
}

/// Checks `expires`/`sign` for `app/stream` at `now` (Unix seconds). The URL is valid through
/// the second `expires` itself and refused from `expires + 1`. The signature is checked before
/// the time, so a forged URL reads as wrong, not as expired.
pub fn verify(
    secret: &[u8],
    app: &str,
    stream: &str,
    expires: &str,
    sign: &str,
    now: u64,
) -> Result<(), SignError> {
    // At most 20 digits: every u64; and the MAC covers the text exactly as sent.
    if expires.is_empty() || expires.len() > 20 || !expires.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignError::BadExpires);
    }
    let until: u64 = expires.parse().map_err(|_| SignError::BadExpires)?;
    let Some(got) = from_hex32(sign) else {
        return Err(SignError::Mismatch);
    };
    // `verify_slice` compares in constant time.
    let mac = mac(secret, signed_message(app, stream, expires).as_bytes());
    if hmac::Mac::verify_slice(mac, &got).is_err() {
        return Err(SignError::Mismatch);
    }
    if now > until {
        return Err(SignError::Expired);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ct_eq_is_equality() {
        for (a, b, eq) in [
            (&b""[..], &b""[..], true),
            (b"abc", b"abc", true),
            (b"abc", b"abd", false),
            (b"abc", b"ab", false),
            (b"ab", b"abc", false),
            (b"", b"a", false),
            (b"a", b"", false),
            (b"abcabc", b"abc", false),
        ] {
            assert_eq!(ct_eq(a, b), eq, "{a:?} {b:?}");
        }
    }

    #[test]
    fn hmac_rfc4231_vectors() {
        // RFC 4231 test cases 2 and 6 (a key longer than the block).
        assert_eq!(
            to_hex(&hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            to_hex(&hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn verify_table() {
        let s = b"s3cret";
        let good = sign(s, "live", "cam", 1000);
        let upper = good.to_uppercase();
        let other_stream = sign(s, "live", "cam2", 1000);
        let other_secret = sign(b"other", "live", "cam", 1000);
        for (expires, sig, now, want) in [
            ("1000", good.as_str(), 999, Ok(())),
            ("1000", good.as_str(), 1000, Ok(())),
            ("1000", good.as_str(), 1001, Err(SignError::Expired)),
            ("1000", upper.as_str(), 1000, Ok(())),
            ("1000", other_stream.as_str(), 0, Err(SignError::Mismatch)),
            ("1000", other_secret.as_str(), 0, Err(SignError::Mismatch)),
            ("1001", good.as_str(), 0, Err(SignError::Mismatch)),
            ("01000", good.as_str(), 0, Err(SignError::Mismatch)),
            ("1000", &good[..63], 0, Err(SignError::Mismatch)),
            ("1000", "zz", 0, Err(SignError::Mismatch)),
            ("", good.as_str(), 0, Err(SignError::BadExpires)),
            ("-1", good.as_str(), 0, Err(SignError::BadExpires)),
            ("1e3", good.as_str(), 0, Err(SignError::BadExpires)),
            (
                "99999999999999999999",
                good.as_str(),
                0,
                Err(SignError::BadExpires),
            ),
        ] {
            assert_eq!(
                verify(s, "live", "cam", expires, sig, now),
                want,
                "{expires} {sig} {now}"
            );
        }
    }
}
