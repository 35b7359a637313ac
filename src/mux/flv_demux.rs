//! Incremental FLV demuxer: bytes in (from a file or an HTTP-FLV stream), `Frame`s out.
//! Used by the tests, by the Rust publisher to read fixtures, and by the FLV gateway. No I/O here:
//! the caller owns the buffer and appends to it; `Ok(None)` means "feed me more bytes".
//!
//! Policy on PreviousTagSize: a value that disagrees with the tag just read is an error (the
//! stream is out of sync and every later tag would be garbage), except 0, which some writers put
//! everywhere instead of computing it; 0 is accepted. FFmpeg and our own muxer write exact values.

use std::fmt;

use bytes::{Buf, BytesMut};

use crate::media::Frame;

/// Length of the FLV file header proper (without PreviousTagSize0).
const HEADER_LEN: usize = 9;
const TAG_HEADER_LEN: usize = 11;
const PREV_TAG_SIZE_LEN: usize = 4;
/// The data offset in the file header says where the body starts; 9 is the only value in use.
/// Larger values are honoured (the extra bytes are skipped) up to this cap.
const MAX_DATA_OFFSET: u32 = 1024;
/// Default cap on one tag body. The FLV size field is 24 bits, so this only bites when lowered.
pub const DEFAULT_MAX_TAG: u32 = 16 * 1024 * 1024;

/// One item out of the demuxer: the file header once, then frames in file order.
#[derive(Clone, Debug)]
pub enum FlvItem {
    Header { has_audio: bool, has_video: bool },
    Frame(Frame),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlvError {
    /// The stream does not start with `FLV`.
    BadSignature,
    /// The header's data offset is below 9 or absurdly large.
    BadDataOffset(u32),
    /// A tag body is larger than the configured cap.
    TagTooLarge(u32),
    /// The PreviousTagSize after a tag is neither its real size nor 0.
    BadPreviousTagSize { expected: u32, found: u32 },
    /// `read_all` only: the data ends inside the header or a tag.
    Truncated { remaining: usize },
}

impl fmt::Display for FlvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlvError::BadSignature => write!(f, "not an FLV stream (bad signature)"),
            FlvError::BadDataOffset(o) => write!(f, "bad FLV header data offset {o}"),
            FlvError::TagTooLarge(n) => write!(f, "FLV tag of {n} bytes is over the size cap"),
            FlvError::BadPreviousTagSize { expected, found } => write!(
                f,
                "FLV PreviousTagSize is {found}, expected {expected} (stream out of sync)"
            ),
            FlvError::Truncated { remaining } => {
                write!(
                    f,
                    "FLV data ends inside a tag ({remaining} bytes left over)"
                )
            }
        }
    }
}

impl std::error::Error for FlvError {}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for the 9-byte header.
    Header,
    /// Skipping the rest of the header (data offset beyond 9) plus PreviousTagSize0.
    Skip(usize),
    /// Reading tags.
    Tags,
}

/// Incremental FLV demuxer. Feed it any split of the byte stream; it yields the same items.
#[derive(Debug)]
pub struct FlvDemuxer {
    state: State,
    max_tag: u32,
}

impl Default for FlvDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl FlvDemuxer {
    /// A demuxer with the default tag cap (16 MiB).
    pub fn new() -> Self {
        Self::with_max_tag(DEFAULT_MAX_TAG)
    }

    /// A demuxer refusing tag bodies larger than `max` bytes.
    pub fn with_max_tag(max: u32) -> Self {
        FlvDemuxer {
            state: State::Header,
            max_tag: max,
        }
    }

    /// Consumes from the front of `buf`; `Ok(None)` = need more bytes. Tags with unknown types
    /// (and empty tags) are skipped; timestamps are the 24-bit field plus the extended byte as
    /// the high 8 bits. Bytes of an incomplete tag stay in `buf` untouched.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<FlvItem>, FlvError> {
        loop {
            match self.state {
                State::Header => {
                    // Check the signature as early as possible so that a wrong stream (an HTML
                    // error page, say) fails at once rather than waiting for 9 bytes.
                    let n = buf.len().min(3);
                    if buf[..n] != b"FLV"[..n] {
                        return Err(FlvError::BadSignature);
                    }
                    if buf.len() < HEADER_LEN {
                        return Ok(None);
                    }
                    let flags = buf[4];
                    let offset = u32::from_be_bytes([buf[5], buf[6], buf[7], buf[8]]);
                    if !(HEADER_LEN as u32..=MAX_DATA_OFFSET).contains(&offset) {
                        return Err(FlvError::BadDataOffset(offset));
                    }
                    buf.advance(HEADER_LEN);
                    self.state = State::Skip(offset as usize - HEADER_LEN + PREV_TAG_SIZE_LEN);
                    return Ok(Some(FlvItem::Header {
                        has_audio: flags & 4 != 0,
                        has_video: flags & 1 != 0,
                    }));
                }
                State::Skip(n) => {
                    let k = n.min(buf.len());
                    buf.advance(k);
                    if k < n {
                        self.state = State::Skip(n - k);
                        return Ok(None);
                    }
                    self.state = State::Tags;
                }
                State::Tags => {
                    if buf.len() < TAG_HEADER_LEN {
                        return Ok(None);
                    }
                    // The top two bits are reserved and bit 5 is the (unused) encryption
                    // filter flag; the type is the low five bits.
                    let tag_type = buf[0] & 0x1f;
                    let size = u32::from_be_bytes([0, buf[1], buf[2], buf[3]]);
                    if size > self.max_tag {
                        return Err(FlvError::TagTooLarge(size));
                    }
                    let dts = u32::from_be_bytes([buf[7], buf[4], buf[5], buf[6]]);
                    let total = TAG_HEADER_LEN + size as usize + PREV_TAG_SIZE_LEN;
                    if buf.len() < total {
                        return Ok(None);
                    }
                    let expected = TAG_HEADER_LEN as u32 + size;
                    let t = TAG_HEADER_LEN + size as usize;
                    let found = u32::from_be_bytes([buf[t], buf[t + 1], buf[t + 2], buf[t + 3]]);
                    if found != expected && found != 0 {
                        return Err(FlvError::BadPreviousTagSize { expected, found });
                    }
                    let mut tag = buf.split_to(total).freeze();
                    tag.advance(TAG_HEADER_LEN);
                    tag.truncate(size as usize);
                    if let Some(frame) = Frame::parse(tag_type, dts, tag) {
                        return Ok(Some(FlvItem::Frame(frame)));
                    }
                }
            }
        }
    }
}

/// Whole-file convenience: the header flags `(has_audio, has_video)` and every frame. Data that
/// ends inside a tag is an error here (a live stream would simply wait for more).
pub fn read_all(data: &[u8]) -> Result<(bool, bool, Vec<Frame>), FlvError> {
    let mut buf = BytesMut::from(data);
    let mut demux = FlvDemuxer::new();
    let mut flags = None;
    let mut frames = Vec::new();
    while let Some(item) = demux.next(&mut buf)? {
        match item {
            FlvItem::Header {
                has_audio,
                has_video,
            } => flags = Some((has_audio, has_video)),
            FlvItem::Frame(f) => frames.push(f),
        }
    }
    // A header-only file has consumed its PreviousTagSize0 only when the state reached Tags.
    match (flags, buf.is_empty(), demux.state) {
        (Some((a, v)), true, State::Tags) => Ok((a, v, frames)),
        _ => Err(FlvError::Truncated {
            remaining: buf.len(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{Codec, Track};
    use crate::mux::flv::{file_header, write_tag};
    use bytes::Bytes;

    fn fixture(name: &str) -> Vec<u8> {
        let path = format!("{}/tests/data/{}", env!("CARGO_MANIFEST_DIR"), name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// A small synthetic file: metadata, AVC sequence header, keyframe, inter frame, AAC config
    /// and raw audio, one tag of an unknown type, and one timestamp past 24 bits.
    fn small_file() -> Vec<u8> {
        let mut v = file_header(true, true).to_vec();
        let tags: [(u8, u32, &[u8]); 7] = [
            (18, 0, b"\x02\x00\x0aonMetaData\x05"),
            (9, 0, &[0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f]),
            (8, 0, &[0xaf, 0, 0x12, 0x10]),
            (9, 0, &[0x17, 1, 0, 0, 0x50, 0, 0, 0, 1, 0x65]),
            (20, 10, &[1, 2, 3]),
            (8, 23, &[0xaf, 1, 0x21, 0x22]),
            (
                9,
                0x0100_0028,
                &[0x27, 1, 0xff, 0xff, 0xd8, 0, 0, 0, 1, 0x41],
            ),
        ];
        for (t, ts, body) in tags {
            v.extend_from_slice(&crate::mux::flv::tag_header(t, body.len(), ts));
            v.extend_from_slice(body);
            v.extend_from_slice(&crate::mux::flv::tag_trailer(body.len()));
        }
        v
    }

    /// Frames as comparable tuples.
    fn key(frames: &[Frame]) -> Vec<(Track, u32, i32, bool, bool, Bytes)> {
        frames
            .iter()
            .map(|f| (f.track, f.dts, f.cts, f.key, f.config, f.data.clone()))
            .collect()
    }

    /// Feeds `data` split at the given offsets; returns header flags and frames.
    fn feed_split(data: &[u8], cuts: &[usize]) -> (Option<(bool, bool)>, Vec<Frame>) {
        let mut demux = FlvDemuxer::new();
        let mut buf = BytesMut::new();
        let mut flags = None;
        let mut frames = Vec::new();
        let mut start = 0;
        for &end in cuts.iter().chain(std::iter::once(&data.len())) {
            buf.extend_from_slice(&data[start..end]);
            start = end;
            while let Some(item) = demux.next(&mut buf).unwrap() {
                match item {
                    FlvItem::Header {
                        has_audio,
                        has_video,
                    } => {
                        assert!(flags.is_none(), "header twice");
                        flags = Some((has_audio, has_video));
                    }
                    FlvItem::Frame(f) => frames.push(f),
                }
            }
        }
        assert!(buf.is_empty());
        (flags, frames)
    }

    #[test]
    fn small_file_frames() {
        let (a, v, frames) = read_all(&small_file()).unwrap();
        assert!(a && v);
        // The unknown tag type 20 is skipped.
        assert_eq!(frames.len(), 6);
        assert_eq!(frames[0].track, Track::Meta);
        assert!(frames[1].config && frames[1].codec == Codec::Avc);
        assert!(frames[2].config && frames[2].codec == Codec::Aac);
        assert_eq!(frames[3].cts, 80);
        assert_eq!(frames[4].dts, 23);
        assert_eq!(frames[5].dts, 0x0100_0028);
        assert_eq!(frames[5].cts, -40);
    }

    #[test]
    fn every_two_piece_split_of_a_small_file() {
        let data = small_file();
        let (_, whole) = feed_split(&data, &[]);
        for cut in 0..=data.len() {
            let (flags, frames) = feed_split(&data, &[cut]);
            assert_eq!(flags, Some((true, true)), "cut {cut}");
            assert_eq!(key(&frames), key(&whole), "cut {cut}");
        }
    }

    #[test]
    fn fixture_in_one_byte_pieces_and_two_pieces() {
        let data = fixture("fixture.flv");
        let (a, v, whole) = read_all(&data).unwrap();
        assert!(a && v);
        let cuts: Vec<usize> = (1..data.len()).collect();
        let (flags, frames) = feed_split(&data, &cuts);
        assert_eq!(flags, Some((true, true)));
        assert_eq!(key(&frames), key(&whole));
        // Two pieces at a spread of offsets, including every offset in the first 2 KiB (header,
        // metadata, sequence headers) where the states change most.
        let step = data.len() / 97;
        for cut in (0..2048).chain((2048..data.len()).step_by(step)) {
            let (_, frames) = feed_split(&data, &[cut]);
            assert_eq!(frames.len(), whole.len(), "cut {cut}");
        }
    }

    #[test]
    fn fixture_counts_match_fixtures_txt() {
        let facts = std::fs::read_to_string(format!(
            "{}/tests/data/fixtures.txt",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let fact = |k: &str| -> usize {
            facts
                .lines()
                .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("{k} missing"))
                .parse()
                .unwrap()
        };
        for (file, audio, video) in [
            ("fixture.flv", true, true),
            ("fixture_audio.flv", true, false),
            ("fixture_video.flv", false, true),
        ] {
            let (a, v, frames) = read_all(&fixture(file)).unwrap();
            assert_eq!((a, v), (audio, video), "{file}");
            // FFmpeg ends an AVC stream with an end-of-sequence tag (AVC packet type 2), which
            // is not a picture and which ffprobe does not count.
            let count = |t| {
                frames
                    .iter()
                    .filter(|f| f.track == t && !f.config && !(t == Track::Video && f.data[1] == 2))
                    .count()
            };
            if video {
                assert_eq!(count(Track::Video), fact(&format!("{file}.video_frames")));
                assert!(frames.iter().any(|f| f.cts != 0), "B-frames expected");
            }
            if audio {
                assert_eq!(count(Track::Audio), fact(&format!("{file}.audio_frames")));
            }
        }
    }

    #[test]
    fn bad_signature_refused_early() {
        let mut d = FlvDemuxer::new();
        assert_eq!(
            d.next(&mut BytesMut::from(&b"HT"[..])).unwrap_err(),
            FlvError::BadSignature
        );
        let mut d = FlvDemuxer::new();
        assert!(d.next(&mut BytesMut::from(&b"FL"[..])).unwrap().is_none());
    }

    #[test]
    fn bad_data_offset_refused() {
        let mut h = file_header(true, true).to_vec();
        h[8] = 3;
        assert_eq!(read_all(&h).unwrap_err(), FlvError::BadDataOffset(3));
    }

    #[test]
    fn larger_data_offset_is_skipped() {
        let mut v = file_header(false, true).to_vec();
        v[8] = 12;
        v.splice(9..9, [0xee, 0xee, 0xee]);
        let f = Frame::parse(9, 7, Bytes::from_static(&[0x17, 1, 0, 0, 0, 9])).unwrap();
        write_tag(&mut v, &f);
        let (a, vid, frames) = read_all(&v).unwrap();
        assert!(!a && vid);
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0].dts, 7);
    }

    #[test]
    fn tag_over_cap_refused_before_its_body_arrives() {
        let mut v = file_header(true, false).to_vec();
        v.extend_from_slice(&crate::mux::flv::tag_header(8, 5000, 0));
        let mut d = FlvDemuxer::with_max_tag(4096);
        let mut buf = BytesMut::from(&v[..]);
        assert!(matches!(d.next(&mut buf), Ok(Some(FlvItem::Header { .. }))));
        assert_eq!(d.next(&mut buf).unwrap_err(), FlvError::TagTooLarge(5000));
    }

    #[test]
    fn previous_tag_size_mismatch_refused_zero_tolerated() {
        let mut v = small_file();
        // The first tag's trailer sits after the file header, the tag header and its body.
        let body = 14;
        let at = 13 + 11 + body;
        assert_eq!(&v[at..at + 4], &25u32.to_be_bytes());
        v[at..at + 4].copy_from_slice(&0u32.to_be_bytes());
        assert_eq!(read_all(&v).unwrap().2.len(), 6);
        v[at..at + 4].copy_from_slice(&26u32.to_be_bytes());
        assert_eq!(
            read_all(&v).unwrap_err(),
            FlvError::BadPreviousTagSize {
                expected: 25,
                found: 26
            }
        );
    }

    #[test]
    fn truncated_file_is_an_error_for_read_all() {
        let v = small_file();
        assert_eq!(
            read_all(&v[..v.len() - 1]).unwrap_err(),
            FlvError::Truncated { remaining: 24 }
        );
        assert!(matches!(
            read_all(&v[..11]),
            Err(FlvError::Truncated { .. })
        ));
        // Header plus PreviousTagSize0 and nothing else is a valid, empty file.
        assert_eq!(read_all(&v[..13]).unwrap().2.len(), 0);
    }

    #[test]
    fn extended_timestamp_byte_is_the_high_byte() {
        let mut v = file_header(true, false).to_vec();
        let f = Frame::parse(8, 0xff00_0001, Bytes::from_static(&[0xaf, 1, 0])).unwrap();
        write_tag(&mut v, &f);
        assert_eq!(read_all(&v).unwrap().2[0].dts, 0xff00_0001);
    }
}
