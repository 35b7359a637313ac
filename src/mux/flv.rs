//! FLV container: the file header, tag headers and trailers, written from `Frame`s.
//! Shared by the live HTTP-FLV/WS-FLV outputs and the FLV recorder; frames in, bytes out.
//! (The incremental FLV demuxer used by the FLV gateway lives in `flv_demux`.)

use crate::media::Frame;

/// Length of the FLV file header plus the first PreviousTagSize (always 0).
pub const FILE_HEADER_LEN: usize = 13;
/// Length of a tag header.
pub const TAG_HEADER_LEN: usize = 11;

/// The 9-byte FLV header followed by PreviousTagSize0. Flags say which tracks exist.
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; FILE_HEADER_LEN] {
    let flags = (if has_audio { 4 } else { 0 }) | (if has_video { 1 } else { 0 });
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// The 11-byte tag header for a tag of `tag_type` with a body of `len` bytes at `timestamp` ms.
/// The timestamp is split as FLV wants: low 24 bits, then the high 8 bits (TimestampExtended).
pub fn tag_header(tag_type: u8, len: usize, timestamp: u32) -> [u8; TAG_HEADER_LEN] {
    let l = len as u32;
    [
        tag_type,
        (l >> 16) as u8,
        (l >> 8) as u8,
        l as u8,
        (timestamp >> 16) as u8,
        (timestamp >> 8) as u8,
        timestamp as u8,
        (timestamp >> 24) as u8,
        0,
        0,
        0,
    ]
}

/// PreviousTagSize after a tag whose body is `len` bytes.
pub fn tag_trailer(len: usize) -> [u8; 4] {
    ((len + TAG_HEADER_LEN) as u32).to_be_bytes()
}

/// The tag header for a frame.
pub fn frame_header(frame: &Frame) -> [u8; TAG_HEADER_LEN] {
    tag_header(frame.tag_type(), frame.data.len(), frame.dts)
}

/// A whole tag (header, body, trailer) in one buffer; for recorders and tests. Live outputs
/// share the body instead of copying it.
pub fn write_tag(out: &mut Vec<u8>, frame: &Frame) {
    out.extend_from_slice(&frame_header(frame));
    out.extend_from_slice(&frame.data);
    out.extend_from_slice(&tag_trailer(frame.data.len()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn header_flags() {
        assert_eq!(file_header(true, true)[4], 5);
        assert_eq!(file_header(true, false)[4], 4);
        assert_eq!(file_header(false, true)[4], 1);
    }

    #[test]
    fn extended_timestamp_goes_in_the_fourth_byte() {
        let h = tag_header(9, 0x010203, 0x1234_5678);
        assert_eq!(h, [9, 1, 2, 3, 0x34, 0x56, 0x78, 0x12, 0, 0, 0]);
    }

    #[test]
    fn whole_tag() {
        let f = Frame::parse(8, 5, Bytes::from_static(&[0xaf, 1, 7])).unwrap();
        let mut v = Vec::new();
        write_tag(&mut v, &f);
        assert_eq!(
            v,
            [8, 0, 0, 3, 0, 0, 5, 0, 0, 0, 0, 0xaf, 1, 7, 0, 0, 0, 14]
        );
    }
}
