//! ISO BMFF (ISO/IEC 14496-12) primitives: a box writer that patches sizes in place, a bounds-checked
//! reader for box bodies, and a box header parser. No knowledge of which boxes make a file; that is
//! `fmp4` (fragments) and `mp4` (the progressive merge).

use std::fmt;

/// Appends boxes to a byte vector. `begin` returns the box start; `end` patches its 32-bit size.
#[derive(Default, Debug)]
pub struct BoxWriter {
    pub buf: Vec<u8>,
}

impl BoxWriter {
    pub fn new() -> BoxWriter {
        BoxWriter { buf: Vec::new() }
    }

    pub fn with_capacity(n: usize) -> BoxWriter {
        BoxWriter {
            buf: Vec::with_capacity(n),
        }
    }

    pub fn len(&self) -> usize {
        self.buf.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Opens a plain box; the size is written by `end`.
    pub fn begin(&mut self, kind: &[u8; 4]) -> usize {
        let at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0, 0, 0]);
        self.buf.extend_from_slice(kind);
        at
    }

    /// Opens a full box (version and 24-bit flags after the header).
    pub fn begin_full(&mut self, kind: &[u8; 4], version: u8, flags: u32) -> usize {
        let at = self.begin(kind);
        self.u32(((version as u32) << 24) | (flags & 0x00ff_ffff));
        at
    }

    /// Closes the box opened at `at`. Boxes we build are far below 4 GiB (the one large box, `mdat`,
    /// is written by hand with `mdat_header`).
    pub fn end(&mut self, at: usize) {
        let size = (self.buf.len() - at) as u32;
        self.buf[at..at + 4].copy_from_slice(&size.to_be_bytes());
    }

    pub fn u8(&mut self, v: u8) {
        self.buf.push(v);
    }
    pub fn u16(&mut self, v: u16) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u24(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes()[1..]);
    }
    pub fn u32(&mut self, v: u32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn i32(&mut self, v: i32) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn u64(&mut self, v: u64) {
        self.buf.extend_from_slice(&v.to_be_bytes());
    }
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }
    pub fn zeros(&mut self, n: usize) {
        self.buf.resize(self.buf.len() + n, 0);
    }

    /// The unity transformation matrix used by `mvhd` and `tkhd`.
    /// The version-dependent run of `mvhd`, `tkhd` and `mdhd`: creation and modification time
    /// (0), the 32-bit fields between them and the duration (`middle`), then the duration; the
    /// times and the duration are 64-bit in version 1 (`v1`).
    pub fn dated(&mut self, v1: bool, middle: &[u32], duration: u64) {
        if v1 {
            self.u64(0);
            self.u64(0);
        } else {
            self.u32(0);
            self.u32(0);
        }
        for &m in middle {
            self.u32(m);
        }
        if v1 {
            self.u64(duration);
        } else {
            self.u32(duration as u32);
        }
    }

    pub fn matrix(&mut self) {
        for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
            self.u32(v);
        }
    }

    /// `ftyp` (or `styp`, which has the same layout).
    pub fn file_type(
        &mut self,
        kind: &[u8; 4],
        major: &[u8; 4],
        minor: u32,
        compatible: &[&[u8; 4]],
    ) {
        let at = self.begin(kind);
        self.bytes(major);
        self.u32(minor);
        for c in compatible {
            self.bytes(*c);
        }
        self.end(at);
    }
}

/// Opens a VisualSampleEntry (ISO/IEC 14496-12 12.1.3) of type `kind` and writes its fixed fields;
/// the codec's configuration box goes after, then `end(at)`.
pub fn begin_visual_sample_entry(
    w: &mut BoxWriter,
    kind: &[u8; 4],
    width: u32,
    height: u32,
) -> usize {
    let at = w.begin(kind);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(16); // pre_defined, reserved, pre_defined[3]
    w.u16(width.min(0xffff) as u16);
    w.u16(height.min(0xffff) as u16);
    w.u32(0x0048_0000); // 72 dpi
    w.u32(0x0048_0000);
    w.u32(0);
    w.u16(1); // frame_count
    w.zeros(32); // compressorname
    w.u16(0x0018); // depth
    w.u16(0xffff); // pre_defined = -1
    at
}

/// Opens an AudioSampleEntry (ISO/IEC 14496-12 12.2.3, version 0) of type `kind`; the rate is
/// 16.16 fixed point, so rates above 65535 Hz are written as 0 (the codec box is authoritative).
pub fn begin_audio_sample_entry(
    w: &mut BoxWriter,
    kind: &[u8; 4],
    channels: u16,
    sample_rate: u32,
) -> usize {
    let at = w.begin(kind);
    w.zeros(6);
    w.u16(1); // data_reference_index
    w.zeros(8);
    w.u16(channels);
    w.u16(16); // samplesize
    w.u32(0);
    w.u32(if sample_rate <= 0xffff {
        sample_rate << 16
    } else {
        0
    });
    at
}

/// An MPEG-4 descriptor (ISO/IEC 14496-1 8.3.3): tag, the length as a 7-bit varint, the body.
pub fn descriptor(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let mut groups = Vec::with_capacity(4);
    let mut l = body.len();
    loop {
        groups.push((l & 0x7f) as u8);
        l >>= 7;
        if l == 0 {
            break;
        }
    }
    for (i, g) in groups.iter().rev().enumerate() {
        out.push(if i + 1 < groups.len() { g | 0x80 } else { *g });
    }
    out.extend_from_slice(body);
    out
}

/// An `esds` box for an audio stream of `object_type` (0x40 AAC, 0x6B MPEG-1 audio, 0x69 MPEG-2
/// audio), with a DecoderSpecificInfo only when `dsi` is not empty (MP3 has none).
pub fn write_esds(w: &mut BoxWriter, es_id: u16, object_type: u8, dsi: &[u8]) {
    let at = w.begin_full(b"esds", 0, 0);
    // objectTypeIndication, streamType 5 (audio) << 2 | reserved 1, bufferSizeDB, max/avg bitrate.
    let mut dcd = vec![object_type, 0x15, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    if !dsi.is_empty() {
        dcd.extend_from_slice(&descriptor(5, dsi));
    }
    let mut es = es_id.to_be_bytes().to_vec();
    es.push(0); // no dependency, URL or OCR stream
    es.extend_from_slice(&descriptor(4, &dcd));
    es.extend_from_slice(&descriptor(6, &[2])); // SLConfig predefined 2 (MP4)
    w.bytes(&descriptor(3, &es));
    w.end(at);
}

/// The header of an `mdat` holding `payload` bytes: 8 bytes, or 16 (64-bit `largesize`) past 4 GiB.
pub fn mdat_header(payload: u64) -> Vec<u8> {
    if payload + 8 <= u32::MAX as u64 {
        let mut h = ((payload + 8) as u32).to_be_bytes().to_vec();
        h.extend_from_slice(b"mdat");
        h
    } else {
        let mut h = vec![0, 0, 0, 1];
        h.extend_from_slice(b"mdat");
        h.extend_from_slice(&(payload + 16).to_be_bytes());
        h
    }
}

/// Why a box or a box body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BmffError {
    /// A field or child box runs past the end of its parent.
    Truncated,
    /// A size field smaller than its own header, or otherwise impossible.
    BadSize,
    /// A value out of the range we accept (e.g. a sample count larger than the box could hold).
    BadValue,
}

impl fmt::Display for BmffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BmffError::Truncated => "ISO BMFF box truncated",
            BmffError::BadSize => "ISO BMFF box with an impossible size",
            BmffError::BadValue => "ISO BMFF field out of range",
        })
    }
}

impl std::error::Error for BmffError {}

impl From<BmffError> for std::io::Error {
    fn from(e: BmffError) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, e)
    }
}

/// A box header: its type, the header length (8 or 16) and the total size including the header.
/// `size == None` means "to the end of the file" (size field 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BoxHeader {
    pub kind: [u8; 4],
    pub header_len: u8,
    pub size: Option<u64>,
}

impl BoxHeader {
    /// Parses a header from the start of `b`. `Ok(None)` when `b` is too short to hold it.
    pub fn parse(b: &[u8]) -> Result<Option<BoxHeader>, BmffError> {
        if b.len() < 8 {
            return Ok(None);
        }
        let size32 = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let kind = [b[4], b[5], b[6], b[7]];
        match size32 {
            0 => Ok(Some(BoxHeader {
                kind,
                header_len: 8,
                size: None,
            })),
            1 => {
                if b.len() < 16 {
                    return Ok(None);
                }
                let mut l = [0u8; 8];
                l.copy_from_slice(&b[8..16]);
                let size = u64::from_be_bytes(l);
                if size < 16 {
                    return Err(BmffError::BadSize);
                }
                Ok(Some(BoxHeader {
                    kind,
                    header_len: 16,
                    size: Some(size),
                }))
            }
            s if s < 8 => Err(BmffError::BadSize),
            s => Ok(Some(BoxHeader {
                kind,
                header_len: 8,
                size: Some(s as u64),
            })),
        }
    }
}

/// Iterates over the child boxes packed in `b` (a box body), yielding `(type, body)`.
/// A child that overruns its parent yields `Err(Truncated)` and ends the iteration.
pub struct Boxes<'a> {
    rest: &'a [u8],
}

pub fn boxes(b: &[u8]) -> Boxes<'_> {
    Boxes { rest: b }
}

impl<'a> Iterator for Boxes<'a> {
    type Item = Result<([u8; 4], &'a [u8]), BmffError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let h = match BoxHeader::parse(self.rest) {
            Ok(Some(h)) => h,
            Ok(None) => {
                self.rest = &[];
                return Some(Err(BmffError::Truncated));
            }
            Err(e) => {
                self.rest = &[];
                return Some(Err(e));
            }
        };
        let size = h.size.unwrap_or(self.rest.len() as u64);
        if size > self.rest.len() as u64 || size < h.header_len as u64 {
            self.rest = &[];
            return Some(Err(BmffError::Truncated));
        }
        let (this, rest) = self.rest.split_at(size as usize);
        self.rest = rest;
        Some(Ok((h.kind, &this[h.header_len as usize..])))
    }
}

/// Finds the first child of type `kind` in a box body.
pub fn find<'a>(b: &'a [u8], kind: &[u8; 4]) -> Result<Option<&'a [u8]>, BmffError> {
    for child in boxes(b) {
        let (k, body) = child?;
        if &k == kind {
            return Ok(Some(body));
        }
    }
    Ok(None)
}

/// Reads big-endian fields from a box body, never past its end.
pub type Reader<'a> = crate::codec::bytes::Reader<'a, BmffError>;

impl crate::codec::bytes::Truncated for BmffError {
    fn truncated() -> Self {
        BmffError::Truncated
    }
}

impl Reader<'_> {
    /// The version byte and 24-bit flags of a full box.
    pub fn full_header(&mut self) -> Result<(u8, u32), BmffError> {
        let v = self.u32()?;
        Ok(((v >> 24) as u8, v & 0x00ff_ffff))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ftyp_bytes() {
        let mut w = BoxWriter::new();
        w.file_type(b"ftyp", b"isom", 0x200, &[b"isom", b"iso2"]);
        assert_eq!(
            w.buf,
            b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2".to_vec()
        );
    }

    #[test]
    fn nested_sizes_are_patched() {
        let mut w = BoxWriter::new();
        let outer = w.begin(b"moov");
        let inner = w.begin_full(b"mfhd", 0, 0);
        w.u32(7);
        w.end(inner);
        w.end(outer);
        assert_eq!(
            w.buf,
            b"\x00\x00\x00\x18moov\x00\x00\x00\x10mfhd\x00\x00\x00\x00\x00\x00\x00\x07".to_vec()
        );
        let (k, body) = boxes(&w.buf).next().unwrap().unwrap();
        assert_eq!(&k, b"moov");
        let mfhd = find(body, b"mfhd").unwrap().unwrap();
        let mut r = Reader::new(mfhd);
        assert_eq!(r.full_header().unwrap(), (0, 0));
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.u32(), Err(BmffError::Truncated));
    }

    #[test]
    fn headers_short_large_and_bad() {
        assert_eq!(BoxHeader::parse(b"\x00\x00\x00"), Ok(None));
        assert_eq!(
            BoxHeader::parse(b"\x00\x00\x00\x04free"),
            Err(BmffError::BadSize)
        );
        let large = b"\x00\x00\x00\x01mdat\x00\x00\x00\x01\x00\x00\x00\x10";
        assert_eq!(
            BoxHeader::parse(large),
            Ok(Some(BoxHeader {
                kind: *b"mdat",
                header_len: 16,
                size: Some(0x1_0000_0010)
            }))
        );
        assert_eq!(BoxHeader::parse(&large[..12]), Ok(None));
    }

    #[test]
    fn child_overrunning_parent_is_an_error() {
        let b = b"\x00\x00\x00\x20free\x00\x00";
        let mut it = boxes(b);
        assert_eq!(it.next(), Some(Err(BmffError::Truncated)));
        assert_eq!(it.next(), None);
    }

    #[test]
    fn mdat_header_switches_to_largesize() {
        assert_eq!(mdat_header(10), b"\x00\x00\x00\x12mdat".to_vec());
        let h = mdat_header(0x1_0000_0000);
        assert_eq!(h.len(), 16);
        assert_eq!(&h[..8], b"\x00\x00\x00\x01mdat");
        assert_eq!(&h[8..], &0x1_0000_0010u64.to_be_bytes());
    }

    #[test]
    fn esds_matches_the_fmp4_aac_entry() {
        // The AAC entry the fMP4 muxer writes has the esds that write_esds builds for 0x40.
        let a = crate::mux::fmp4::AudioConfig {
            asc: bytes::Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44100,
            channels: 2,
        };
        let mut w = BoxWriter::new();
        crate::mux::fmp4::write_stsd_audio(&mut w, &a, 2);
        let mut e = BoxWriter::new();
        write_esds(&mut e, 2, 0x40, &[0x12, 0x10]);
        assert!(w.buf.ends_with(&e.buf));
        // Without a DecoderSpecificInfo (MP3), the DecoderConfigDescriptor is 13 bytes.
        let mut e = BoxWriter::new();
        write_esds(&mut e, 1, 0x6b, &[]);
        assert_eq!(&e.buf[12..], b"\x03\x15\x00\x01\x00\x04\x0d\x6b\x15\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x06\x01\x02");
    }

    #[test]
    fn descriptor_lengths_use_varints() {
        assert_eq!(descriptor(5, &[1, 2]), vec![5, 2, 1, 2]);
        let big = descriptor(4, &[0; 200]);
        assert_eq!(&big[..3], &[4, 0x81, 0x48]);
        assert_eq!(big.len(), 203);
    }

    #[test]
    fn sample_entry_headers() {
        let mut w = BoxWriter::new();
        let at = begin_audio_sample_entry(&mut w, b"Opus", 2, 48000);
        w.end(at);
        assert_eq!(w.buf.len(), 36);
        assert_eq!(&w.buf[24..36], &[0, 2, 0, 16, 0, 0, 0, 0, 0xbb, 0x80, 0, 0]);
        let mut w = BoxWriter::new();
        let at = begin_audio_sample_entry(&mut w, b"fLaC", 1, 96000);
        w.end(at);
        assert_eq!(
            &w.buf[32..36],
            &[0, 0, 0, 0],
            "a rate over 16 bits is written as 0"
        );
        let mut w = BoxWriter::new();
        let at = begin_visual_sample_entry(&mut w, b"hvc1", 1920, 1080);
        w.end(at);
        assert_eq!(w.buf.len(), 86);
        assert_eq!(&w.buf[32..36], &[0x07, 0x80, 0x04, 0x38]);
    }
}
