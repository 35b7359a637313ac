//! The RTMP handshake, sans-IO: `ServerHandshake` (plain and the digest form Flash-era clients
//! and FFmpeg use) and `ClientHandshake` (plain). Bytes in, bytes out; no socket, no clock,
//! no RNG crate (the caller passes a seed and the time field). It does not read chunks: bytes
//! after the handshake are left to the caller.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Length of C1, C2, S1 and S2.
pub const HANDSHAKE_SIZE: usize = 1536;
/// The only protocol version accepted in C0/S0 (6 would be RTMPE, which we do not speak).
pub const RTMP_VERSION: u8 = 3;

/// The server version we put in S1 bytes 4-7 when answering a digest handshake. A non-zero
/// value there tells FFmpeg (as a player) that S1 and S2 carry digests, which it then checks;
/// the plain answer keeps those bytes zero so that FFmpeg does not look for digests.
const SERVER_VERSION: [u8; 4] = [0x0d, 0x0e, 0x0a, 0x0d];
/// The 32 bytes that follow the text in both well-known handshake keys.
const KEY_TAIL: [u8; 32] = [
    0xf0, 0xee, 0xc2, 0x4a, 0x80, 0x68, 0xbe, 0xe8, 0x2e, 0x00, 0xd0, 0xd1, 0x02, 0x9e, 0x7e, 0x57,
    0x6e, 0xec, 0x5d, 0x2d, 0x29, 0x80, 0x6f, 0xab, 0x93, 0xb8, 0xe6, 0x36, 0xcf, 0xeb, 0x31, 0xae,
];
const FP_TEXT: &[u8; 30] = b"Genuine Adobe Flash Player 001";
const FMS_TEXT: &[u8; 36] = b"Genuine Adobe Flash Media Server 001";
const DIGEST_LEN: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HandshakeError {
    /// C0 or S0 is not 3.
    BadVersion(u8),
}

impl std::fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HandshakeError::BadVersion(v) => write!(f, "RTMP handshake version {v}, expected 3"),
        }
    }
}

impl std::error::Error for HandshakeError {}

/// The two places a digest may sit in C1/S1. In schema 0 the 764-byte digest block comes
/// first (bytes 8..772) and its offset is derived from its first 4 bytes; in schema 1 it comes
/// second (bytes 772..1536). Either way the digest lies within the block's 728-byte data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Schema {
    Zero,
    One,
}

fn digest_offset(packet: &[u8; HANDSHAKE_SIZE], schema: Schema) -> usize {
    let base = match schema {
        Schema::Zero => 8,
        Schema::One => 772,
    };
    let sum: usize = packet[base..base + 4].iter().map(|&b| b as usize).sum();
    sum % 728 + base + 4
}

/// HMAC-SHA256 (RFC 2104) of the concatenation of `parts`.
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The HMAC of `packet` with the 32 bytes at `off` left out.
fn packet_digest(packet: &[u8; HANDSHAKE_SIZE], off: usize, key: &[u8]) -> [u8; 32] {
    hmac_sha256(key, &[&packet[..off], &packet[off + DIGEST_LEN..]])
}

/// Finds a valid client digest in C1: schema 1 first (what Flash Player sends), then schema 0
/// (what FFmpeg and librtmp send).
fn find_client_digest(c1: &[u8; HANDSHAKE_SIZE]) -> Option<(Schema, [u8; 32])> {
    let fp_key = &fp_key()[..FP_TEXT.len()];
    [Schema::One, Schema::Zero].into_iter().find_map(|schema| {
        let off = digest_offset(c1, schema);
        let d = packet_digest(c1, off, fp_key);
        (d[..] == c1[off..off + DIGEST_LEN]).then_some((schema, d))
    })
}

fn fp_key() -> [u8; 62] {
    let mut k = [0u8; 62];
    k[..30].copy_from_slice(FP_TEXT);
    k[30..].copy_from_slice(&KEY_TAIL);
    k
}

fn fms_key() -> [u8; 68] {
    let mut k = [0u8; 68];
    k[..36].copy_from_slice(FMS_TEXT);
    k[36..].copy_from_slice(&KEY_TAIL);
    k
}

/// xorshift64*: enough to make handshake bytes unpredictable-looking; not cryptographic, and
/// nothing in RTMP needs it to be.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // xorshift never leaves 0; any fixed non-zero value will do.
        Rng(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Accumulates one fixed-size handshake packet across calls.
struct Packet {
    bytes: Box<[u8; HANDSHAKE_SIZE]>,
    len: usize,
}

impl Packet {
    fn new() -> Packet {
        Packet {
            bytes: Box::new([0; HANDSHAKE_SIZE]),
            len: 0,
        }
    }

    /// Copies what is missing from `input`; returns the bytes taken.
    fn fill_from(&mut self, input: &[u8]) -> usize {
        let n = (HANDSHAKE_SIZE - self.len).min(input.len());
        self.bytes[self.len..self.len + n].copy_from_slice(&input[..n]);
        self.len += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len == HANDSHAKE_SIZE
    }
}

/// Where one side is in reading the other's three parts: the version byte, the first packet
/// (C1 or S1, which it answers) and the second (C2 or S2, read and not checked: peers differ
/// too much). The same for both sides, so it is written once.
enum Phase {
    Version,
    First,
    Second,
    Done,
}

struct Incoming {
    phase: Phase,
    packet: Packet,
}

impl Incoming {
    fn new() -> Incoming {
        Incoming {
            phase: Phase::Version,
            packet: Packet::new(),
        }
    }

    /// Consumes bytes of the peer's three parts from `input`, calling `on_first` once with the
    /// first packet when it is whole. Returns the bytes consumed, never past the second packet.
    fn feed(
        &mut self,
        input: &[u8],
        mut on_first: impl FnMut(&[u8; HANDSHAKE_SIZE]),
    ) -> Result<usize, HandshakeError> {
        let mut used = 0;
        while used < input.len() {
            match self.phase {
                Phase::Version => {
                    if input[used] != RTMP_VERSION {
                        return Err(HandshakeError::BadVersion(input[used]));
                    }
                    used += 1;
                    self.phase = Phase::First;
                }
                Phase::First => {
                    used += self.packet.fill_from(&input[used..]);
                    if self.packet.is_full() {
                        on_first(&self.packet.bytes);
                        self.packet.len = 0;
                        self.phase = Phase::Second;
                    }
                }
                Phase::Second => {
                    used += self.packet.fill_from(&input[used..]);
                    if self.packet.is_full() {
                        self.phase = Phase::Done;
                    }
                }
                Phase::Done => break,
            }
        }
        Ok(used)
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }
}

/// The server side: reads C0 C1 C2, writes S0 S1 S2 once C1 is complete.
pub struct ServerHandshake {
    incoming: Incoming,
    rng: Rng,
    epoch: u32,
}

impl ServerHandshake {
    /// `seed` feeds the generator of the random bytes; `epoch` is S1's time field (ms).
    pub fn new(seed: u64, epoch: u32) -> ServerHandshake {
        ServerHandshake {
            incoming: Incoming::new(),
            rng: Rng::new(seed),
            epoch,
        }
    }

    /// Consumes C0/C1/C2 bytes from `input` and appends S0 S1 S2 to `out` when C1 is whole.
    /// Returns the bytes consumed; bytes after C2 are not consumed (they are chunks).
    pub fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, HandshakeError> {
        let (rng, epoch) = (&mut self.rng, self.epoch);
        self.incoming.feed(input, |c1| answer(rng, epoch, c1, out))
    }

    pub fn is_done(&self) -> bool {
        self.incoming.is_done()
    }
}

/// S0 S1 S2 for `c1`: with digests when C1 carries a valid one, else the plain form (S2
/// echoes C1). A client is never refused for its digest.
fn answer(rng: &mut Rng, epoch: u32, c1: &[u8; HANDSHAKE_SIZE], out: &mut Vec<u8>) {
    let mut s1 = [0u8; HANDSHAKE_SIZE];
    s1[..4].copy_from_slice(&epoch.to_be_bytes());
    rng.fill(&mut s1[8..]);
    out.push(RTMP_VERSION);
    match find_client_digest(c1) {
        Some((schema, c1_digest)) => {
            s1[4..8].copy_from_slice(&SERVER_VERSION);
            let off = digest_offset(&s1, schema);
            let d = packet_digest(&s1, off, &fms_key()[..FMS_TEXT.len()]);
            s1[off..off + DIGEST_LEN].copy_from_slice(&d);
            out.extend_from_slice(&s1);

            let mut s2 = [0u8; HANDSHAKE_SIZE];
            rng.fill(&mut s2);
            let key = hmac_sha256(&fms_key(), &[&c1_digest]);
            let sig = hmac_sha256(&key, &[&s2[..HANDSHAKE_SIZE - DIGEST_LEN]]);
            s2[HANDSHAKE_SIZE - DIGEST_LEN..].copy_from_slice(&sig);
            out.extend_from_slice(&s2);
        }
        None => {
            out.extend_from_slice(&s1);
            out.extend_from_slice(&c1[..]);
        }
    }
}

/// The client side, plain form: C0 C1 at once, C2 (the echo of S1) once S1 is whole.
pub struct ClientHandshake {
    incoming: Incoming,
}

impl ClientHandshake {
    /// Appends C0 and C1 to `out` (time field `epoch`, version bytes zero: the plain form).
    pub fn new(seed: u64, epoch: u32, out: &mut Vec<u8>) -> ClientHandshake {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        c1[..4].copy_from_slice(&epoch.to_be_bytes());
        Rng::new(seed).fill(&mut c1[8..]);
        out.push(RTMP_VERSION);
        out.extend_from_slice(&c1);
        ClientHandshake {
            incoming: Incoming::new(),
        }
    }

    /// Consumes S0/S1/S2 from `input` and appends C2 to `out` once S1 is whole. Returns the
    /// bytes consumed, never past S2.
    pub fn handle_input(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<usize, HandshakeError> {
        self.incoming
            .feed(input, |s1| out.extend_from_slice(&s1[..]))
    }

    pub fn is_done(&self) -> bool {
        self.incoming.is_done()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(bytes: &[u8]) -> [u8; HANDSHAKE_SIZE] {
        bytes.try_into().unwrap()
    }

    /// C0 + C1 carrying a client digest at `schema`, as FFmpeg and Flash Player build it.
    fn digest_c0c1(schema: Schema, seed: u64) -> (Vec<u8>, [u8; 32]) {
        let mut c1 = [0u8; HANDSHAKE_SIZE];
        Rng::new(seed).fill(&mut c1[8..]);
        c1[4..8].copy_from_slice(&[9, 0, 124, 2]);
        let off = digest_offset(&c1, schema);
        let d = packet_digest(&c1, off, FP_TEXT);
        c1[off..off + DIGEST_LEN].copy_from_slice(&d);
        let mut out = vec![3];
        out.extend_from_slice(&c1);
        (out, d)
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Keys longer than a block are hashed first (RFC 4231 case 6).
        let mac = hmac_sha256(
            &[0xaa; 131],
            &[b"Test Using Larger Than Block-Size Key - Hash Key First"],
        );
        assert_eq!(mac[..4], [0x60, 0xe4, 0x31, 0x59]);
    }

    #[test]
    fn plain_handshake_fed_at_every_split() {
        let mut c = Vec::new();
        ClientHandshake::new(5, 1000, &mut c);
        c.extend(std::iter::repeat_n(0x42, HANDSHAKE_SIZE)); // C2
        c.extend_from_slice(b"chunks");
        let mut reference = Vec::new();
        let mut srv = ServerHandshake::new(1, 77);
        let used = srv.handle_input(&c, &mut reference).unwrap();
        assert_eq!(used, 1 + 2 * HANDSHAKE_SIZE);
        assert!(srv.is_done());
        assert_eq!(reference.len(), 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(reference[0], 3);
        assert_eq!(&reference[1..5], &77u32.to_be_bytes());
        assert_eq!(&reference[5..9], &[0, 0, 0, 0]);
        assert_eq!(&reference[1 + HANDSHAKE_SIZE..], &c[1..1 + HANDSHAKE_SIZE]);

        for at in 0..=c.len() {
            let mut srv = ServerHandshake::new(1, 77);
            let mut out = Vec::new();
            let a = srv.handle_input(&c[..at], &mut out).unwrap();
            let b = srv.handle_input(&c[a..], &mut out).unwrap();
            assert_eq!(a + b, 1 + 2 * HANDSHAKE_SIZE, "split {at}");
            assert_eq!(out, reference, "split {at}");
        }
        let mut srv = ServerHandshake::new(1, 77);
        let mut out = Vec::new();
        let mut used = 0;
        for i in 0..c.len() {
            used += srv.handle_input(&c[used..=i], &mut out).unwrap();
        }
        assert_eq!(used, 1 + 2 * HANDSHAKE_SIZE);
        assert_eq!(out, reference);
        assert_eq!(srv.handle_input(b"more", &mut out), Ok(0));
    }

    #[test]
    fn digest_handshake_both_schemas() {
        for schema in [Schema::Zero, Schema::One] {
            let (c0c1, c1_digest) = digest_c0c1(schema, 3);
            let mut srv = ServerHandshake::new(11, 5);
            let mut out = Vec::new();
            assert_eq!(srv.handle_input(&c0c1, &mut out), Ok(1 + HANDSHAKE_SIZE));
            assert_eq!(out.len(), 1 + 2 * HANDSHAKE_SIZE);
            let s1 = packet(&out[1..1 + HANDSHAKE_SIZE]);
            let s2 = packet(&out[1 + HANDSHAKE_SIZE..]);
            assert_eq!(&s1[4..8], &SERVER_VERSION);
            // S1's digest validates with the 36-byte server key, at the client's schema.
            let off = digest_offset(&s1, schema);
            assert_eq!(packet_digest(&s1, off, FMS_TEXT)[..], s1[off..off + 32]);
            // S2's signature, checked the way FFmpeg checks it.
            let key = hmac_sha256(&fms_key(), &[&c1_digest]);
            let sig = hmac_sha256(&key, &[&s2[..HANDSHAKE_SIZE - 32]]);
            assert_eq!(sig[..], s2[HANDSHAKE_SIZE - 32..]);
            assert_ne!(&s2[..], &c0c1[1..]);
            assert!(!srv.is_done());
            assert_eq!(srv.handle_input(&s1, &mut out), Ok(HANDSHAKE_SIZE));
            assert!(srv.is_done());
        }
    }

    #[test]
    fn garbage_digest_falls_back_to_plain() {
        let (mut c0c1, _) = digest_c0c1(Schema::Zero, 3);
        let off = digest_offset(&packet(&c0c1[1..]), Schema::Zero);
        c0c1[1 + off] ^= 0xff;
        let mut srv = ServerHandshake::new(11, 5);
        let mut out = Vec::new();
        srv.handle_input(&c0c1, &mut out).unwrap();
        assert_eq!(&out[5..9], &[0, 0, 0, 0]);
        assert_eq!(&out[1 + HANDSHAKE_SIZE..], &c0c1[1..]);
    }

    #[test]
    fn bad_version_is_an_error() {
        let mut srv = ServerHandshake::new(1, 0);
        assert_eq!(
            srv.handle_input(&[6, 0, 0], &mut Vec::new()),
            Err(HandshakeError::BadVersion(6))
        );
        let mut cl = ClientHandshake::new(1, 0, &mut Vec::new());
        assert_eq!(
            cl.handle_input(&[0x16, 3, 1], &mut Vec::new()),
            Err(HandshakeError::BadVersion(0x16))
        );
    }

    #[test]
    fn client_and_server_in_memory() {
        let mut to_server = Vec::new();
        let mut client = ClientHandshake::new(42, 1, &mut to_server);
        assert_eq!(to_server.len(), 1 + HANDSHAKE_SIZE);
        assert_eq!(&to_server[5..9], &[0, 0, 0, 0]);
        let mut server = ServerHandshake::new(43, 2);
        let mut to_client = Vec::new();
        // Deliver in awkward pieces both ways until both are done.
        let mut rounds = 0;
        while !(client.is_done() && server.is_done()) {
            rounds += 1;
            assert!(rounds < 100);
            let n = to_server.len().min(700);
            let used = server
                .handle_input(&to_server[..n], &mut to_client)
                .unwrap();
            assert_eq!(used, n);
            to_server.drain(..n);
            let n = to_client.len().min(500);
            let used = client
                .handle_input(&to_client[..n], &mut to_server)
                .unwrap();
            assert_eq!(used, n);
            to_client.drain(..n);
        }
        assert!(to_server.is_empty() && to_client.is_empty());
        // The client stops at the end of S2, leaving what follows.
        let mut out = Vec::new();
        let mut c = ClientHandshake::new(1, 0, &mut out);
        let mut s = vec![3];
        s.extend(vec![7; 2 * HANDSHAKE_SIZE]);
        s.extend_from_slice(b"rest");
        out.clear();
        assert_eq!(c.handle_input(&s, &mut out), Ok(1 + 2 * HANDSHAKE_SIZE));
        assert_eq!(out, vec![7; HANDSHAKE_SIZE]);
        assert!(c.is_done());
    }
}
