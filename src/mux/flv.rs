//! FLV tags from `Frame`s: frames in, bytes out, for the FLV recorder, tools and tests. The
//! byte framing itself (file header, tag header, trailer) is `codec::flv`, re-exported here;
//! the incremental demuxer used by the FLV gateway is `flv_demux`.

pub use crate::codec::flv::{
    file_header, tag_header, tag_trailer, FILE_HEADER_LEN, TAG_HEADER_LEN,
};
use crate::media::Frame;

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
