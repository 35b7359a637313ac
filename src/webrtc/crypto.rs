//! The crypto backend str0m runs on: SRTP ciphers, STUN's HMAC-SHA1, SHA-256 fingerprints and
//! DTLS, all pure Rust. DTLS is dimpl (str0m's own DTLS) on its RustCrypto provider; the
//! self-signed DTLS certificate is made by rcgen on ring, which rustls already builds for every
//! target we ship.
//!
//! Why not str0m's `rust-crypto` feature: its backend crate (0.6) turns on dimpl's `rcgen`
//! feature, which builds aws-lc-sys (C code, a C toolchain per target) only to make that one
//! certificate. This file is that backend (adapted from str0m-rust-crypto 0.6, MIT/Apache-2.0)
//! with the certificate made on ring instead. No key material is logged; hostile lengths come
//! back as errors, never panics.

use std::sync::Arc;
use std::time::Instant;

use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, Nonce};
use ctr::cipher::{KeyIvInit, StreamCipher};
use hmac_012::{Hmac, Mac};
use str0m::crypto::dtls::{
    DtlsCert, DtlsImplError, DtlsInstance, DtlsOutput, DtlsProvider, DtlsVersion, ProtocolVersion,
};
use str0m::crypto::{
    AeadAes128Gcm, AeadAes128GcmCipher, AeadAes256Gcm, AeadAes256GcmCipher, Aes128CmSha1_80Cipher,
    CryptoError, CryptoProvider, Sha1HmacProvider, Sha256Provider, SrtpProvider,
    SupportedAeadAes128Gcm, SupportedAeadAes256Gcm, SupportedAes128CmSha1_80,
};

/// The provider every `Rtc` of ours is built with (`RtcConfig::set_crypto_provider`).
pub fn provider() -> Arc<CryptoProvider> {
    static SRTP: Srtp = Srtp;
    static HMAC: HmacSha1 = HmacSha1;
    static SHA256: Sha256 = Sha256;
    static DTLS: Dtls = Dtls;
    Arc::new(CryptoProvider {
        srtp_provider: &SRTP,
        sha1_hmac_provider: &HMAC,
        sha256_provider: &SHA256,
        dtls_provider: &DTLS,
    })
}

/// A fresh self-signed ECDSA P-256 certificate for DTLS (its SHA-256 fingerprint goes into the
/// SDP answer). The serial number is random: Firefox refuses two certificates with one serial.
pub fn self_signed_certificate() -> Option<DtlsCert> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
    use ring::rand::SecureRandom;

    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).ok()?;
    let mut params = CertificateParams::new(Vec::<String>::new()).ok()?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "rtmpd WebRTC");
    params.distinguished_name = name;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(365);
    let mut serial = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut serial).ok()?;
    serial[0] &= 0x7f; // a positive INTEGER
    params.serial_number = Some(serial.to_vec().into());
    let cert = params.self_signed(&key).ok()?;
    Some(DtlsCert {
        certificate: cert.der().to_vec(),
        private_key: key.serialize_der(),
    })
}

#[derive(Debug)]
struct Dtls;

impl DtlsProvider for Dtls {
    fn generate_certificate(&self) -> Option<DtlsCert> {
        self_signed_certificate()
    }

    fn new_dtls(
        &self,
        cert: &DtlsCert,
        now: Instant,
        version: DtlsVersion,
        mtu: Option<usize>,
    ) -> Result<Box<dyn DtlsInstance>, CryptoError> {
        let cert = dimpl::DtlsCertificate {
            certificate: cert.certificate.clone(),
            private_key: cert.private_key.clone(),
        };
        // ICE has checked return routability before DTLS starts: a server cookie adds nothing.
        let mut builder = dimpl::Config::builder().use_server_cookie(false);
        if let Some(mtu) = mtu {
            builder = builder.mtu(mtu);
        }
        let config = builder
            .build()
            .map_err(|e| CryptoError::Other(format!("DTLS config: {e}")))?;
        let config = Arc::new(config);
        let dtls = match version {
            DtlsVersion::Dtls12 => dimpl::Dtls::new_12(config, cert, now),
            DtlsVersion::Dtls13 => dimpl::Dtls::new_13(config, cert, now),
            DtlsVersion::Auto => dimpl::Dtls::new_auto(config, cert, now),
            other => return Err(CryptoError::Other(format!("DTLS version {other}"))),
        };
        Ok(Box::new(DtlsConn(dtls)))
    }
}

struct DtlsConn(dimpl::Dtls);

impl std::fmt::Debug for DtlsConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DtlsConn")
    }
}

impl DtlsInstance for DtlsConn {
    fn set_active(&mut self, active: bool) {
        self.0.set_active(active);
    }
    fn handle_packet(&mut self, packet: &[u8]) -> Result<(), DtlsImplError> {
        self.0.handle_packet(packet)
    }
    fn poll_output<'a>(&mut self, buf: &'a mut [u8]) -> DtlsOutput<'a> {
        self.0.poll_output(buf)
    }
    fn handle_timeout(&mut self, now: Instant) -> Result<(), DtlsImplError> {
        self.0.handle_timeout(now)
    }
    fn send_application_data(&mut self, data: &[u8]) -> Result<(), DtlsImplError> {
        self.0.send_application_data(data)
    }
    fn is_active(&self) -> bool {
        self.0.is_active()
    }
    fn protocol_version(&self) -> Option<ProtocolVersion> {
        self.0.protocol_version()
    }
    fn is_closing(&self) -> bool {
        self.0.is_closing()
    }
    fn is_closed(&self) -> bool {
        self.0.is_closed()
    }
    fn close(&mut self) -> Result<(), DtlsImplError> {
        self.0.close()
    }
}

#[derive(Debug)]
struct HmacSha1;

impl Sha1HmacProvider for HmacSha1 {
    fn sha1_hmac(&self, key: &[u8], payloads: &[&[u8]]) -> [u8; 20] {
        // HMAC takes a key of any length: new_from_slice cannot fail.
        let mut mac = match <Hmac<sha1::Sha1> as Mac>::new_from_slice(key) {
            Ok(m) => m,
            Err(_) => return [0; 20],
        };
        for p in payloads {
            mac.update(p);
        }
        mac.finalize().into_bytes().into()
    }
}

#[derive(Debug)]
struct Sha256;

impl Sha256Provider for Sha256 {
    fn sha256(&self, data: &[u8]) -> [u8; 32] {
        use sha2_010::Digest;
        sha2_010::Sha256::digest(data).into()
    }
}

type Aes128Ctr = ctr::Ctr128BE<aes::Aes128>;

struct AesCm {
    key: [u8; 16],
}

impl std::fmt::Debug for AesCm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesCm")
    }
}

impl Aes128CmSha1_80Cipher for AesCm {
    fn encrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        let out = output
            .get_mut(..input.len())
            .ok_or_else(|| CryptoError::Other("SRTP output buffer too short".into()))?;
        out.copy_from_slice(input);
        Aes128Ctr::new(&self.key.into(), iv.into()).apply_keystream(out);
        Ok(())
    }

    fn decrypt(
        &mut self,
        iv: &[u8; 16],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        // Counter mode is its own inverse.
        self.encrypt(iv, input, output)
    }
}

/// AES-GCM with either key size: the two SRTP AEAD profiles differ only in the key.
struct Gcm<C>(C);

impl<C> std::fmt::Debug for Gcm<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Gcm")
    }
}

fn gcm_seal<C: Aead>(
    cipher: &C,
    iv: &[u8; 12],
    aad: &[u8],
    input: &[u8],
    output: &mut [u8],
) -> Result<(), CryptoError> {
    let sealed = cipher
        .encrypt(Nonce::from_slice(iv), Payload { msg: input, aad })
        .map_err(|_| CryptoError::Other("AES-GCM encrypt failed".into()))?;
    output
        .get_mut(..sealed.len())
        .ok_or_else(|| CryptoError::Other("SRTP output buffer too short".into()))?
        .copy_from_slice(&sealed);
    Ok(())
}

fn gcm_open<C: Aead>(
    cipher: &C,
    iv: &[u8; 12],
    aads: &[&[u8]],
    input: &[u8],
    output: &mut [u8],
) -> Result<usize, CryptoError> {
    let joined;
    let aad = if let [one] = aads {
        *one
    } else {
        joined = aads.concat();
        &joined
    };
    let plain = cipher
        .decrypt(Nonce::from_slice(iv), Payload { msg: input, aad })
        .map_err(|_| CryptoError::Other("AES-GCM decrypt failed".into()))?;
    output
        .get_mut(..plain.len())
        .ok_or_else(|| CryptoError::Other("SRTP output buffer too short".into()))?
        .copy_from_slice(&plain);
    Ok(plain.len())
}

impl AeadAes128GcmCipher for Gcm<Aes128Gcm> {
    fn encrypt(
        &mut self,
        iv: &[u8; AeadAes128Gcm::IV_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        gcm_seal(&self.0, iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; AeadAes128Gcm::IV_LEN],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        gcm_open(&self.0, iv, aads, input, output)
    }
}

impl AeadAes256GcmCipher for Gcm<Aes256Gcm> {
    fn encrypt(
        &mut self,
        iv: &[u8; AeadAes256Gcm::IV_LEN],
        aad: &[u8],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<(), CryptoError> {
        gcm_seal(&self.0, iv, aad, input, output)
    }

    fn decrypt(
        &mut self,
        iv: &[u8; AeadAes256Gcm::IV_LEN],
        aads: &[&[u8]],
        input: &[u8],
        output: &mut [u8],
    ) -> Result<usize, CryptoError> {
        gcm_open(&self.0, iv, aads, input, output)
    }
}

#[derive(Debug)]
struct Srtp;

#[derive(Debug)]
struct SupportedCm;
#[derive(Debug)]
struct SupportedGcm128;
#[derive(Debug)]
struct SupportedGcm256;

impl SupportedAes128CmSha1_80 for SupportedCm {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn Aes128CmSha1_80Cipher> {
        Box::new(AesCm { key })
    }
}

impl SupportedAeadAes128Gcm for SupportedGcm128 {
    fn create_cipher(&self, key: [u8; 16], _encrypt: bool) -> Box<dyn AeadAes128GcmCipher> {
        Box::new(Gcm(Aes128Gcm::new(GenericArray::from_slice(&key))))
    }
}

impl SupportedAeadAes256Gcm for SupportedGcm256 {
    fn create_cipher(&self, key: [u8; 32], _encrypt: bool) -> Box<dyn AeadAes256GcmCipher> {
        Box::new(Gcm(Aes256Gcm::new(GenericArray::from_slice(&key))))
    }
}

/// One AES block of `input` and one block of PKCS#7 padding, as str0m's SRTP key derivation
/// asks for (it reads the first 16 bytes).
fn ecb_round<C: aes::cipher::BlockEncrypt<BlockSize = aes::cipher::consts::U16>>(
    cipher: &C,
    input: &[u8],
    output: &mut [u8],
) {
    if input.len() < 16 || output.len() < 32 {
        return;
    }
    let mut block = *GenericArray::from_slice(&input[..16]);
    cipher.encrypt_block(&mut block);
    output[..16].copy_from_slice(&block);
    let mut pad = GenericArray::from([0x10u8; 16]);
    cipher.encrypt_block(&mut pad);
    output[16..32].copy_from_slice(&pad);
}

impl SrtpProvider for Srtp {
    fn aes_128_cm_sha1_80(&self) -> &'static dyn SupportedAes128CmSha1_80 {
        &SupportedCm
    }

    fn aead_aes_128_gcm(&self) -> &'static dyn SupportedAeadAes128Gcm {
        &SupportedGcm128
    }

    fn aead_aes_256_gcm(&self) -> &'static dyn SupportedAeadAes256Gcm {
        &SupportedGcm256
    }

    fn srtp_aes_128_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        if let Ok(c) = <aes::Aes128 as aes::cipher::KeyInit>::new_from_slice(key) {
            ecb_round(&c, input, output);
        }
    }

    fn srtp_aes_256_ecb_round(&self, key: &[u8], input: &[u8], output: &mut [u8]) {
        if let Ok(c) = <aes::Aes256 as aes::cipher::KeyInit>::new_from_slice(key) {
            ecb_round(&c, input, output);
        }
    }
}
