//! Media messages as both sessions receive them, turned into `Frame`s: audio and video, the
//! `onMetaData` body of a data message, and the sub-messages of an Aggregate. No session state,
//! no events: whether a stream may send media is the session's decision.

use bytes::Bytes;

use super::message::{self as mt, Message};

use crate::media::frame::TAG_SCRIPT;
use crate::media::{meta, Frame};

/// The frame an audio, video or data message carries: `None` for other types, for data that is
/// not `onMetaData` and for payloads `Frame::parse` refuses.
pub fn to_frame(msg: Message) -> Option<Frame> {
    match msg.type_id {
        mt::AUDIO | mt::VIDEO => Frame::parse(msg.type_id, msg.timestamp, msg.payload),
        mt::DATA_AMF0 | mt::DATA_AMF3 => {
            let body = metadata_payload(msg.type_id, &msg.payload)?;
            Frame::parse(TAG_SCRIPT, msg.timestamp, body)
        }
        _ => None,
    }
}

/// The AMF0 `onMetaData` body of a data message (`media::meta` decides what that is), or `None` when the
/// message is other data (`|RtmpSampleAccess`, cue points...) or malformed. AMF0 messages keep
/// their bytes (sliced, no copy); AMF3 data messages are re-encoded as AMF0.
pub fn metadata_payload(type_id: u8, payload: &Bytes) -> Option<Bytes> {
    match type_id {
        mt::DATA_AMF0 => meta::on_metadata(payload),
        mt::DATA_AMF3 => meta::on_metadata_values(&mt::decode_message(type_id, payload).ok()?),
        _ => None,
    }
}

/// Splits an Aggregate message into its sub-messages (FLV tags: 11-byte header, body, 4-byte
/// back pointer). Sub-message times are re-based on the aggregate's own timestamp. `None`
/// when a sub-message runs past the end: the peer broke the protocol.
pub fn split_aggregate(msg: &Message) -> Option<Vec<Message>> {
    let p = &msg.payload;
    let mut pos = 0;
    let mut first_ts = None;
    let mut subs = Vec::new();
    while pos < p.len() {
        let h = p.get(pos..pos.checked_add(11)?)?;
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
        let start = pos + 11;
        let end = start.checked_add(size).filter(|e| *e <= p.len())?;
        let base = *first_ts.get_or_insert(ts);
        subs.push(Message {
            csid: msg.csid,
            timestamp: msg.timestamp.wrapping_add(ts.wrapping_sub(base)),
            type_id: h[0],
            stream_id: msg.stream_id,
            payload: p.slice(start..end),
        });
        // Some encoders leave off the last back pointer.
        pos = end.saturating_add(4).min(p.len());
    }
    Some(subs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::amf::amf0;

    #[test]
    fn to_frame_takes_media_and_metadata_only() {
        let msg = |type_id: u8, payload: &'static [u8]| Message {
            csid: 4,
            timestamp: 40,
            type_id,
            stream_id: 1,
            payload: Bytes::from_static(payload),
        };
        let audio = to_frame(msg(mt::AUDIO, &[0xaf, 1, 7])).unwrap();
        assert_eq!((audio.dts, audio.data.len()), (40, 3));
        let meta = amf0::encode_all(&[
            crate::amf::Value::string("onMetaData"),
            crate::amf::Value::object([("width", crate::amf::Value::Number(320.0))]),
        ]);
        let m = Message {
            payload: Bytes::from(meta.clone()),
            ..msg(mt::DATA_AMF0, &[])
        };
        assert_eq!(&to_frame(m).unwrap().data[..], &meta[..]);
        let cue = amf0::encode_all(&[crate::amf::Value::string("onCuePoint")]);
        let m = Message {
            payload: Bytes::from(cue),
            ..msg(mt::DATA_AMF0, &[])
        };
        assert!(to_frame(m).is_none(), "other data is not a frame");
        assert!(to_frame(msg(mt::COMMAND_AMF0, &[2, 0, 0])).is_none());
    }

    #[test]
    fn split_aggregate_rejects_truncation() {
        let msg = Message {
            csid: 4,
            timestamp: 0,
            type_id: mt::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from_static(&[9, 0, 0, 50, 0, 0, 0, 0, 0, 0, 0, 1, 2]),
        };
        assert!(split_aggregate(&msg).is_none());
    }

    #[test]
    fn aggregate_sizes_never_overflow() {
        // A sub-message header claiming 16 MiB - 1 bytes in a 13-byte payload.
        let msg = Message {
            csid: 4,
            timestamp: 0,
            type_id: mt::AGGREGATE,
            stream_id: 1,
            payload: Bytes::from_static(&[9, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 1, 2]),
        };
        assert!(split_aggregate(&msg).is_none());
        // One whole sub-message without its back pointer is fine.
        let msg = Message {
            payload: Bytes::from_static(&[9, 0, 0, 2, 0, 0, 5, 0, 0, 0, 0, 1, 2]),
            ..msg
        };
        let subs = split_aggregate(&msg).unwrap();
        assert_eq!((subs.len(), &subs[0].payload[..]), (1, &[1u8, 2][..]));
    }
}
