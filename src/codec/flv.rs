//! FLV tag framing, a leaf that any layer may import: the file header, tag headers and
//! trailers as bytes. No `Frame`s (that is `mux::flv`), no demuxing (`mux::flv_demux`).

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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn trailer_counts_the_header() {
        assert_eq!(tag_trailer(3), [0, 0, 0, 14]);
    }
}
