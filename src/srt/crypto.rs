//! SRT encryption (HaiCrypt, AES-CTR): the Keying Material message a caller sends in KMREQ, the
//! KEK from the passphrase (PBKDF2-HMAC-SHA1, 2048 iterations, the salt's last 8 bytes), the
//! stream keys unwrapped with AES key wrap (RFC 3394), and the payload cipher whose counter is the
//! salt's first 112 bits XOR the packet sequence number. No key generation here: in HSv5 the caller
//! makes the keys for both directions and the listener clones them. The primitives are
//! RustCrypto's (`pbkdf2`, `aes-kw`, `ctr` over `aes`); this module owns the HaiCrypt layout.

use aes::cipher::{InnerIvInit, KeyInit, StreamCipher};

/// PBKDF2 iterations and salt length fixed by HaiCrypt.
pub const PBKDF2_ITER: u32 = 2048;
const PBKDF2_SALT_LEN: usize = 8;
const KM_HEADER: usize = 16;
const SALT_LEN: usize = 16;
/// 'HAI' as a PnP vendor id.
const KM_SIGN: u16 = 0x2029;
const CIPHER_AES_CTR: u8 = 2;

/// Why a KMREQ was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KmError {
    /// Not a well-formed Keying Material message.
    Malformed,
    /// A cipher or mode other than AES-CTR without authentication (AES-GCM, say).
    Unsupported,
    /// The key did not unwrap: the passphrase differs.
    BadSecret,
}

impl std::fmt::Display for KmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KmError::Malformed => "malformed SRT keying material",
            KmError::Unsupported => "SRT keying material asks for a cipher other than AES-CTR",
            KmError::BadSecret => "SRT keying material does not unwrap with our passphrase",
        })
    }
}

impl std::error::Error for KmError {}

/// An AES block cipher of one of the three key sizes (its key schedule, made once per key).
#[derive(Clone)]
pub enum AesKey {
    A128(Box<aes::Aes128>),
    A192(Box<aes::Aes192>),
    A256(Box<aes::Aes256>),
}

impl AesKey {
    pub fn new(key: &[u8]) -> Option<AesKey> {
        Some(match key.len() {
            16 => AesKey::A128(Box::new(aes::Aes128::new_from_slice(key).ok()?)),
            24 => AesKey::A192(Box::new(aes::Aes192::new_from_slice(key).ok()?)),
            32 => AesKey::A256(Box::new(aes::Aes256::new_from_slice(key).ok()?)),
            _ => return None,
        })
    }

    /// XORs `data` with the AES-CTR keystream from the 128-bit big-endian counter `iv`.
    fn ctr(&self, iv: &[u8; 16], data: &mut [u8]) {
        fn run<C>(cipher: &C, iv: &[u8; 16], data: &mut [u8])
        where
            C: aes::cipher::BlockEncryptMut + aes::cipher::BlockCipher + Clone,
            C: aes::cipher::BlockSizeUser<BlockSize = aes::cipher::consts::U16>,
        {
            let core = ctr::CtrCore::<C, ctr::flavors::Ctr128BE>::inner_iv_init(
                cipher.clone(),
                &(*iv).into(),
            );
            ctr::Ctr128BE::from_core(core).apply_keystream(data);
        }
        match self {
            AesKey::A128(c) => run(&**c, iv, data),
            AesKey::A192(c) => run(&**c, iv, data),
            AesKey::A256(c) => run(&**c, iv, data),
        }
    }
}

/// PBKDF2-HMAC-SHA1 (RFC 8018) filling `out`.
pub fn pbkdf2_sha1(password: &[u8], salt: &[u8], iterations: u32, out: &mut [u8]) {
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(password, salt, iterations, out);
}

/// RFC 3394 key wrap of `plain` (a multiple of 8 bytes, at least 16) under `kek` (16, 24 or 32
/// bytes); `None` for other lengths.
pub fn key_wrap(kek: &[u8], plain: &[u8]) -> Option<Vec<u8>> {
    match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).ok()?.wrap_vec(plain).ok(),
        24 => aes_kw::KekAes192::try_from(kek).ok()?.wrap_vec(plain).ok(),
        32 => aes_kw::KekAes256::try_from(kek).ok()?.wrap_vec(plain).ok(),
        _ => None,
    }
}

/// RFC 3394 key unwrap; `None` when the integrity check fails (a different KEK) or the lengths
/// are wrong.
pub fn key_unwrap(kek: &[u8], wrapped: &[u8]) -> Option<Vec<u8>> {
    if wrapped.len() < 24 || !wrapped.len().is_multiple_of(8) {
        return None;
    }
    match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek)
            .ok()?
            .unwrap_vec(wrapped)
            .ok(),
        24 => aes_kw::KekAes192::try_from(kek)
            .ok()?
            .unwrap_vec(wrapped)
            .ok(),
        32 => aes_kw::KekAes256::try_from(kek)
            .ok()?
            .unwrap_vec(wrapped)
            .ok(),
        _ => None,
    }
}

/// The stream keys of one connection, both directions (the listener clones the caller's keys).
#[derive(Clone)]
pub struct Keys {
    salt: [u8; SALT_LEN],
    /// Indexed by KK - 1: even, odd.
    sek: [Option<AesKey>; 2],
    pub key_len: usize,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Keys(AES-{})", self.key_len * 8)
    }
}

impl Keys {
    /// Reads a KMREQ and unwraps its keys with the passphrase.
    pub fn from_km(km: &[u8], passphrase: &[u8]) -> Result<Keys, KmError> {
        if km.len() < KM_HEADER || km[0] != 0x12 || u16::from_be_bytes([km[1], km[2]]) != KM_SIGN {
            return Err(KmError::Malformed);
        }
        let kk = usize::from(km[3] & 0b11);
        let (salt_len, key_len) = (usize::from(km[14]) * 4, usize::from(km[15]) * 4);
        if kk == 0 || salt_len != SALT_LEN || ![16, 24, 32].contains(&key_len) {
            return Err(KmError::Malformed);
        }
        if km[8] != CIPHER_AES_CTR || km[9] != 0 {
            return Err(KmError::Unsupported);
        }
        let nkeys = if kk == 3 { 2 } else { 1 };
        let wrapped = km
            .get(KM_HEADER + SALT_LEN..KM_HEADER + SALT_LEN + nkeys * key_len + 8)
            .ok_or(KmError::Malformed)?;
        let mut salt = [0u8; SALT_LEN];
        salt.copy_from_slice(&km[KM_HEADER..KM_HEADER + SALT_LEN]);
        let kek = derive_kek(passphrase, &salt, key_len);
        let plain = key_unwrap(&kek, wrapped).ok_or(KmError::BadSecret)?;
        let mut sek = [None, None];
        let mut keys = plain.chunks_exact(key_len);
        for (slot, bit) in [(0, 1), (1, 2)] {
            if kk & bit != 0 {
                sek[slot] = keys.next().and_then(AesKey::new);
            }
        }
        Ok(Keys { salt, sek, key_len })
    }

    /// Encrypts or decrypts (the same operation) a payload sent under key `kk` (1 even, 2 odd)
    /// with packet index `seq`. False when that key is not known.
    pub fn apply(&self, kk: u8, seq: u32, data: &mut [u8]) -> bool {
        let Some(Some(key)) = self.sek.get(usize::from(kk).wrapping_sub(1)) else {
            return false;
        };
        let mut iv = [0u8; 16];
        iv[10..14].copy_from_slice(&seq.to_be_bytes());
        iv[..14]
            .iter_mut()
            .zip(&self.salt)
            .for_each(|(a, b)| *a ^= b);
        key.ctr(&iv, data);
        true
    }

    /// The key to send with: the even one when present, else the odd one.
    pub fn send_kk(&self) -> u8 {
        if self.sek[0].is_some() {
            1
        } else {
            2
        }
    }
}

/// The KEK's bytes: PBKDF2 over the passphrase with the salt's last 8 bytes.
fn derive_kek(passphrase: &[u8], salt: &[u8; SALT_LEN], key_len: usize) -> Vec<u8> {
    let mut kek = vec![0u8; key_len];
    pbkdf2_sha1(
        passphrase,
        &salt[SALT_LEN - PBKDF2_SALT_LEN..],
        PBKDF2_ITER,
        &mut kek,
    );
    kek
}

/// Builds a KMREQ as a libsrt caller would (tests and the interop harness act as callers).
/// `None` unless the keys are 16, 24 or 32 bytes.
pub fn build_km(
    passphrase: &[u8],
    salt: [u8; 16],
    even: &[u8],
    odd: Option<&[u8]>,
) -> Option<Vec<u8>> {
    let key_len = even.len();
    let kk = if odd.is_some() { 3 } else { 1 };
    let mut km = vec![
        0x12,
        0x20,
        0x29,
        kk,
        0,
        0,
        0,
        0,
        CIPHER_AES_CTR,
        0,
        2,
        0,
        0,
        0,
    ];
    km.push((SALT_LEN / 4) as u8);
    km.push((key_len / 4) as u8);
    km.extend_from_slice(&salt);
    let mut plain = even.to_vec();
    plain.extend_from_slice(odd.unwrap_or(&[]));
    if ![16, 24, 32].contains(&key_len) {
        return None;
    }
    let kek = derive_kek(passphrase, &salt, key_len);
    km.extend_from_slice(&key_wrap(&kek, &plain)?);
    Some(km)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// RFC 6070 test vectors 1 and 3.
    #[test]
    fn pbkdf2_matches_rfc_6070() {
        let mut out = [0u8; 20];
        pbkdf2_sha1(b"password", b"salt", 1, &mut out);
        assert_eq!(
            out.to_vec(),
            hex("0c60c80f961f0e71f3a9b524af6012062fe037a6")
        );
        pbkdf2_sha1(b"password", b"salt", 4096, &mut out);
        assert_eq!(
            out.to_vec(),
            hex("4b007901b765489abead49d926f721d065a429c1")
        );
        let mut long = [0u8; 25];
        pbkdf2_sha1(
            b"passwordPASSWORDpassword",
            b"saltSALTsaltSALTsaltSALTsaltSALTsalt",
            4096,
            &mut long,
        );
        assert_eq!(
            long.to_vec(),
            hex("3d2eec4fe41c849b80c8d83662c0e44a8b291a964cf2f07038")
        );
    }

    /// RFC 3394 section 4.1 and 4.6 (128-bit key data with a 128-bit KEK, 256 with 256).
    #[test]
    fn key_wrap_matches_rfc_3394() {
        let kek = hex("000102030405060708090A0B0C0D0E0F");
        let data = hex("00112233445566778899AABBCCDDEEFF");
        let wrapped = key_wrap(&kek, &data).unwrap();
        assert_eq!(
            wrapped,
            hex("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5")
        );
        assert_eq!(key_unwrap(&kek, &wrapped), Some(data));
        let kek = hex("000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F");
        let data = hex("00112233445566778899AABBCCDDEEFF000102030405060708090A0B0C0D0E0F");
        let wrapped = key_wrap(&kek, &data).unwrap();
        assert_eq!(
            wrapped,
            hex("28C9F404C4B810F4CBCCB35CFB87F8263F5786E2D80ED326CBC7F0E71A99F43BFB988B9B7A02DD21")
        );
        let mut bad = wrapped.clone();
        bad[3] ^= 1;
        assert_eq!(key_unwrap(&kek, &bad), None);
        assert_eq!(key_unwrap(&kek, &wrapped[..20]), None);
        assert_eq!(
            key_unwrap(&kek[..20], &wrapped),
            None,
            "no AES key of 20 bytes"
        );
    }

    #[test]
    fn keying_material_round_trips_for_every_key_size() {
        for len in [16, 24, 32] {
            let even: Vec<u8> = (0..len as u8).collect();
            let odd: Vec<u8> = (100..100 + len as u8).collect();
            let km = build_km(b"0123456789secret", [7; 16], &even, Some(&odd)).unwrap();
            let keys = Keys::from_km(&km, b"0123456789secret").unwrap();
            assert_eq!(keys.key_len, len);
            let clear: Vec<u8> = (0..1316).map(|i| (i % 251) as u8).collect();
            for kk in [1, 2] {
                let mut buf = clear.clone();
                assert!(keys.apply(kk, 99, &mut buf));
                assert_ne!(buf, clear);
                assert!(keys.apply(kk, 99, &mut buf));
                assert_eq!(buf, clear);
            }
            assert_eq!(
                Keys::from_km(&km, b"0123456789wrong!").err(),
                Some(KmError::BadSecret)
            );
            for cut in 0..km.len() {
                assert!(Keys::from_km(&km[..cut], b"0123456789secret").is_err());
            }
        }
    }

    /// The counter layout: a payload encrypted at index 5 differs from one at index 6, and the
    /// keystream of block 1 is AES(IV + 1), not AES(IV) again.
    #[test]
    fn ctr_keystream_depends_on_index_and_block() {
        let km = build_km(b"passphrase-long", [1; 16], &[9; 16], None).unwrap();
        let keys = Keys::from_km(&km, b"passphrase-long").unwrap();
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        keys.apply(1, 5, &mut a);
        keys.apply(1, 6, &mut b);
        assert_ne!(a, b);
        assert_ne!(a[..16], a[16..]);
        assert!(!keys.apply(2, 5, &mut a), "no odd key in this KM");
        // The counter block for index 5: salt[..14] XOR (0.. | 00000005 at 10..14) | 0000.
        let mut iv = [1u8; 16];
        iv[13] ^= 5;
        iv[14] = 0;
        iv[15] = 0;
        let mut blk = [aes::Block::from(iv)];
        aes::cipher::BlockEncrypt::encrypt_blocks(&aes::Aes128::new(&[9; 16].into()), &mut blk);
        let mut z = [0u8; 16];
        keys.apply(1, 5, &mut z);
        assert_eq!(z[..], blk[0][..]);
    }
}
