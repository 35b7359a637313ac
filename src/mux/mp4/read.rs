//! Reading fMP4 for the merge: the tracks of an init segment (`parse_init`) and the runs of a
//! `moof` (`parse_moof`), with every length, count and offset from the file checked (a bad one
//! is `BmffError`, never a wrap or a panic). No writing, no merge state.

use crate::mux::bmff::{boxes, find, BmffError, Reader};
use crate::mux::fmp4::{Sample, SAMPLE_SYNC};
use std::io::{self, Read};

/// A `moof` larger than this is not one of ours and not trusted.
pub(super) const MAX_MOOF: u64 = 64 << 20;

/// What the merge keeps of an init segment's track: identity, timescale, size, and the sample
/// description (`stsd`) copied verbatim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrackInit {
    pub track_id: u32,
    pub audio: bool,
    pub timescale: u32,
    pub width: u32,
    pub height: u32,
    /// `tkhd`'s `track_enabled` flag (an alternative audio track is not).
    pub enabled: bool,
    /// The whole `stsd` box, header included.
    pub stsd: Vec<u8>,
}

/// Reads the audio and video tracks of an init segment (`ftyp` + `moov`).
pub fn parse_init(init: &[u8]) -> Result<Vec<TrackInit>, BmffError> {
    let moov = find(init, b"moov")?.ok_or(BmffError::Truncated)?;
    let mut out = Vec::new();
    for child in boxes(moov) {
        let (kind, trak) = child?;
        if &kind != b"trak" {
            continue;
        }
        let tkhd = find(trak, b"tkhd")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(tkhd);
        let (version, flags) = r.full_header()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let track_id = r.u32()?;
        let enabled = flags & 1 != 0;
        let mut r = Reader::new(tkhd);
        r.skip(tkhd.len().checked_sub(8).ok_or(BmffError::Truncated)?)?;
        let width = r.u32()? >> 16;
        let height = r.u32()? >> 16;
        let mdia = find(trak, b"mdia")?.ok_or(BmffError::Truncated)?;
        let mdhd = find(mdia, b"mdhd")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(mdhd);
        let (version, _) = r.full_header()?;
        r.skip(if version == 1 { 16 } else { 8 })?;
        let timescale = r.u32()?;
        let hdlr = find(mdia, b"hdlr")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(hdlr);
        r.skip(8)?;
        let handler = r.take(4)?;
        let audio = match handler {
            b"soun" => true,
            b"vide" => false,
            _ => continue,
        };
        let minf = find(mdia, b"minf")?.ok_or(BmffError::Truncated)?;
        let stbl = find(minf, b"stbl")?.ok_or(BmffError::Truncated)?;
        let stsd_body = find(stbl, b"stsd")?.ok_or(BmffError::Truncated)?;
        let stsd_len = stsd_body
            .len()
            .checked_add(8)
            .and_then(|n| u32::try_from(n).ok())
            .ok_or(BmffError::BadSize)?;
        let mut stsd = stsd_len.to_be_bytes().to_vec();
        stsd.extend_from_slice(b"stsd");
        stsd.extend_from_slice(stsd_body);
        if timescale == 0 {
            return Err(BmffError::BadValue);
        }
        out.push(TrackInit {
            track_id,
            audio,
            timescale,
            width,
            height,
            enabled,
            stsd,
        });
    }
    Ok(out)
}

/// A parsed `trun` before its bytes are checked against the file.
#[derive(Clone, Debug)]
pub(super) struct ParsedRun {
    pub(super) track_id: u32,
    pub(super) decode_time: Option<u64>,
    pub(super) offset: u64,
    pub(super) samples: Vec<Sample>,
}

pub(super) fn read_up_to<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// The runs of a `moof` body (the moof starts at file offset `moof_at`), with absolute data offsets.
pub(super) fn parse_moof(moof: &[u8], moof_at: u64) -> Result<Vec<ParsedRun>, BmffError> {
    let mut runs = Vec::new();
    for child in boxes(moof) {
        let (kind, traf) = child?;
        if &kind != b"traf" {
            continue;
        }
        let tfhd = find(traf, b"tfhd")?.ok_or(BmffError::Truncated)?;
        let mut r = Reader::new(tfhd);
        let (_, flags) = r.full_header()?;
        let track_id = r.u32()?;
        let base = if flags & 0x01 != 0 { r.u64()? } else { moof_at };
        if flags & 0x02 != 0 {
            r.u32()?;
        }
        let default_duration = if flags & 0x08 != 0 { r.u32()? } else { 0 };
        let default_size = if flags & 0x10 != 0 { r.u32()? } else { 0 };
        let default_flags = if flags & 0x20 != 0 {
            r.u32()?
        } else {
            SAMPLE_SYNC
        };
        let decode_time = match find(traf, b"tfdt")? {
            Some(tfdt) => {
                let mut r = Reader::new(tfdt);
                let (version, _) = r.full_header()?;
                Some(if version == 1 {
                    r.u64()?
                } else {
                    r.u32()? as u64
                })
            }
            None => None,
        };
        let mut next_offset = base;
        let mut first_run = true;
        for child in boxes(traf) {
            let (kind, trun) = child?;
            if &kind != b"trun" {
                continue;
            }
            let mut r = Reader::new(trun);
            let (_, flags) = r.full_header()?;
            let count = r.u32()? as usize;
            let offset = if flags & 0x01 != 0 {
                // A signed offset from a 64-bit base: both come from the file.
                let o = r.u32()? as i32 as i64;
                base.checked_add_signed(o).ok_or(BmffError::BadValue)?
            } else {
                next_offset
            };
            let first_flags = if flags & 0x04 != 0 {
                Some(r.u32()?)
            } else {
                None
            };
            let per = [0x100, 0x200, 0x400, 0x800]
                .iter()
                .filter(|f| flags & **f != 0)
                .count()
                * 4;
            if per > 0 && count > r.remaining() / per {
                return Err(BmffError::BadValue);
            }
            if per == 0 && count > 1 << 20 {
                return Err(BmffError::BadValue);
            }
            let mut samples = Vec::with_capacity(count);
            let mut bytes = 0u64;
            for i in 0..count {
                let duration = if flags & 0x100 != 0 {
                    r.u32()?
                } else {
                    default_duration
                };
                let size = if flags & 0x200 != 0 {
                    r.u32()?
                } else {
                    default_size
                };
                let mut sflags = if flags & 0x400 != 0 {
                    r.u32()?
                } else {
                    default_flags
                };
                if i == 0 {
                    if let Some(f) = first_flags {
                        sflags = f;
                    }
                }
                let cto = if flags & 0x800 != 0 {
                    r.u32()? as i32
                } else {
                    0
                };
                // At most 2^20 (or r.remaining() / 4) sizes of 2^32: cannot overflow u64.
                bytes += size as u64;
                samples.push(Sample {
                    duration,
                    size,
                    flags: sflags,
                    cto,
                });
            }
            next_offset = offset.checked_add(bytes).ok_or(BmffError::BadValue)?;
            runs.push(ParsedRun {
                track_id,
                // Only the first run of a traf starts at the tfdt; later ones follow on.
                decode_time: if first_run { decode_time } else { None },
                offset,
                samples,
            });
            first_run = false;
        }
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mux::fmp4::{init_segment, AudioConfig, VideoConfig};
    use bytes::Bytes;

    #[test]
    fn init_round_trip() {
        let a = AudioConfig {
            asc: Bytes::from_static(&[0x12, 0x10]),
            sample_rate: 44100,
            channels: 2,
        };
        let tracks = parse_init(&init_segment(None, Some(&a))).unwrap();
        assert_eq!(tracks.len(), 1);
        assert!(tracks[0].audio);
        assert_eq!(tracks[0].timescale, 44100);
        assert_eq!(tracks[0].track_id, 2);
        assert_eq!(&tracks[0].stsd[4..8], b"stsd");
        let v = VideoConfig {
            avcc: Bytes::from_static(&[1, 0x64, 0, 0x1f, 0xff, 0xe0, 0]),
            width: 320,
            height: 240,
        };
        let v = parse_init(&init_segment(Some(&v), None)).unwrap();
        assert_eq!(
            (v[0].width, v[0].height, v[0].timescale),
            (320, 240, 90_000)
        );
    }

    fn bx(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut b = ((body.len() + 8) as u32).to_be_bytes().to_vec();
        b.extend_from_slice(kind);
        b.extend_from_slice(body);
        b
    }

    /// A `moof` body with one traf: tfhd with an explicit 64-bit base data offset, and a trun
    /// of one 10-byte sample at `offset` from it.
    fn moof_body(base: u64, offset: i32) -> Vec<u8> {
        let mut tfhd = vec![0, 0, 0, 0x01];
        tfhd.extend_from_slice(&1u32.to_be_bytes());
        tfhd.extend_from_slice(&base.to_be_bytes());
        let mut trun = vec![0, 0, 0x02, 0x01];
        trun.extend_from_slice(&1u32.to_be_bytes());
        trun.extend_from_slice(&offset.to_be_bytes());
        trun.extend_from_slice(&10u32.to_be_bytes());
        bx(b"traf", &[bx(b"tfhd", &tfhd), bx(b"trun", &trun)].concat())
    }

    /// Offsets are a 64-bit base from the file plus a signed 32-bit offset: the sum must not
    /// wrap (it did through `base as i64`), and neither may the end of the run.
    #[test]
    fn data_offsets_that_overflow_are_bad_values() {
        let ok = parse_moof(&moof_body(1000, -100), 0).unwrap();
        assert_eq!((ok[0].offset, ok[0].samples.len()), (900, 1));
        for (base, offset) in [
            (u64::MAX, 100),
            (0, -100),
            (u64::MAX - 5, 0),
            (i64::MAX as u64 + 1, 0x7fff_ffff),
        ] {
            let got = parse_moof(&moof_body(base, offset), 0).map(|r| r[0].offset);
            match got {
                Ok(at) => assert_eq!(Some(at), base.checked_add_signed(offset as i64)),
                Err(e) => assert_eq!(e, BmffError::BadValue, "base {base} offset {offset}"),
            }
        }
        assert_eq!(
            parse_moof(&moof_body(u64::MAX, 100), 0).unwrap_err(),
            BmffError::BadValue
        );
        assert_eq!(
            parse_moof(&moof_body(u64::MAX - 5, 0), 0).unwrap_err(),
            BmffError::BadValue,
            "the run's end past 2^64"
        );
    }
}
