//! THE one place that normalises `onMetaData`: the body players and recorders get (the
//! `@setDataFrame` prefix a publisher sends removed without copying, bare `onMetaData`
//! recognised, anything else is not metadata), its properties, and what they say about the
//! stream (`MetaInfo`). Pure functions on AMF0 bytes; it does not decide where metadata goes (the
//! hub caches and relays it, the FLV recorder rewrites it with `duration` and `filesize`).

use bytes::Bytes;

use crate::amf::{amf0, Value};

/// The instruction publishers put in front of the metadata they want kept; not part of it.
const SET_DATA_FRAME: &str = "@setDataFrame";
const ON_METADATA: &str = "onMetaData";

/// The `onMetaData` body of an AMF0 script message (`@setDataFrame` in front or not), as a slice
/// of `data` (nothing is copied). `None` for other script data (`|RtmpSampleAccess`, cue points)
/// and for malformed AMF: such a body is not metadata.
pub fn on_metadata(data: &Bytes) -> Option<Bytes> {
    let (first, used) = amf0::decode(data).ok()?;
    let body = match first.as_str()? {
        SET_DATA_FRAME => data.slice(used.min(data.len())..),
        ON_METADATA => data.clone(),
        _ => return None,
    };
    is_valid(&amf0::decode_all(&body).ok()?).then_some(body)
}

/// The AMF0 `onMetaData` body for a message already decoded into values (AMF3 data messages,
/// whose bytes cannot be relayed as AMF0): `@setDataFrame` dropped, re-encoded.
pub fn on_metadata_values(values: &[Value]) -> Option<Bytes> {
    let start = match values.first()?.as_str()? {
        SET_DATA_FRAME => 1,
        ON_METADATA => 0,
        _ => return None,
    };
    let rest = values.get(start..)?;
    is_valid(rest).then(|| Bytes::from(amf0::encode_all(rest)))
}

/// `onMetaData` followed by at least its argument.
fn is_valid(values: &[Value]) -> bool {
    values.len() >= 2 && values[0].as_str() == Some(ON_METADATA)
}

/// The properties of an `onMetaData` body (an object or ECMA array); `None` for anything else.
pub fn properties(body: &[u8]) -> Option<Vec<(String, Value)>> {
    let (name, used) = amf0::decode(body).ok()?;
    if name.as_str()? != ON_METADATA {
        return None;
    }
    match amf0::decode(body.get(used..)?).ok()?.0 {
        Value::Object(p) | Value::EcmaArray(p) => Some(p),
        _ => None,
    }
}

/// What `onMetaData` says about a stream (every field optional: encoders differ).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetaInfo {
    pub width: Option<f64>,
    pub height: Option<f64>,
    pub framerate: Option<f64>,
    pub video_data_rate: Option<f64>,
    pub audio_data_rate: Option<f64>,
    pub audio_sample_rate: Option<f64>,
    pub audio_channels: Option<f64>,
    pub encoder: Option<String>,
    /// From `hasAudio`, else `Some(true)` when `audiocodecid` is present; `None` when the
    /// metadata says nothing about tracks.
    pub has_audio: Option<bool>,
    pub has_video: Option<bool>,
}

impl MetaInfo {
    /// Parses an `onMetaData` body (as `on_metadata` returns it). Bad AMF gives an empty info:
    /// the metadata is relayed as it is either way.
    pub fn parse(body: &[u8]) -> MetaInfo {
        let Ok(values) = amf0::decode_all(body) else {
            return MetaInfo::default();
        };
        let Some(obj) = values
            .iter()
            .find(|v| matches!(v, Value::Object(_) | Value::EcmaArray(_)))
        else {
            return MetaInfo::default();
        };
        let num = |name: &str| obj.get(name).and_then(Value::as_f64);
        let flag = |name: &str| match obj.get(name) {
            Some(Value::Boolean(b)) => Some(*b),
            _ => None,
        };
        let track = |has: &str, codec: &str| {
            flag(has).or(obj.get(codec).map(|_| true)).or_else(|| {
                // Metadata that describes the other track but not this one means "none".
                (obj.get("audiocodecid").is_some() || obj.get("videocodecid").is_some())
                    .then_some(false)
            })
        };
        let channels = num("audiochannels").or(match flag("stereo") {
            Some(true) => Some(2.0),
            Some(false) => Some(1.0),
            None => None,
        });
        MetaInfo {
            width: num("width"),
            height: num("height"),
            framerate: num("framerate").or(num("fps")),
            video_data_rate: num("videodatarate"),
            audio_data_rate: num("audiodatarate"),
            audio_sample_rate: num("audiosamplerate"),
            audio_channels: channels,
            encoder: obj
                .get("encoder")
                .and_then(Value::as_str)
                .map(str::to_string),
            has_audio: track("hasAudio", "audiocodecid"),
            has_video: track("hasVideo", "videocodecid"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(first: &[Value]) -> Bytes {
        Bytes::from(amf0::encode_all(first))
    }

    fn props() -> Value {
        Value::EcmaArray(vec![
            ("width".into(), Value::Number(1280.0)),
            ("height".into(), Value::Number(720.0)),
            ("framerate".into(), Value::Number(30.0)),
            ("videocodecid".into(), Value::Number(7.0)),
            ("encoder".into(), Value::string("obs")),
            ("stereo".into(), Value::Boolean(true)),
        ])
    }

    #[test]
    fn metadata_info() {
        let b = body(&[Value::string("onMetaData"), props()]);
        assert_eq!(
            on_metadata(&b),
            Some(b.clone()),
            "bare onMetaData is metadata"
        );
        let m = MetaInfo::parse(&b);
        assert_eq!(m.width, Some(1280.0));
        assert_eq!(m.height, Some(720.0));
        assert_eq!(m.framerate, Some(30.0));
        assert_eq!(m.encoder.as_deref(), Some("obs"));
        assert_eq!(m.audio_channels, Some(2.0));
        assert_eq!(m.has_video, Some(true));
        assert_eq!(m.has_audio, Some(false));
        assert_eq!(MetaInfo::parse(b"\x02\x00"), MetaInfo::default());
        assert_eq!(properties(&b).map(|p| p.len()), Some(6));
    }

    #[test]
    fn set_data_frame_is_stripped_without_copy() {
        let data = body(&[
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            props(),
        ]);
        let stripped = on_metadata(&data).unwrap();
        assert_eq!(&stripped[..13], b"\x02\x00\x0aonMetaData");
        // The same bytes, sliced.
        assert_eq!(stripped.as_ptr(), data[16..].as_ptr());
        assert_eq!(stripped.len(), data.len() - 16);
        assert!(properties(&stripped).is_some());
    }

    #[test]
    fn other_script_data_and_bad_amf_are_not_metadata() {
        assert_eq!(
            on_metadata(&body(&[Value::string("|RtmpSampleAccess")])),
            None
        );
        assert_eq!(
            on_metadata(&body(&[Value::string("onCuePoint"), props()])),
            None
        );
        assert_eq!(on_metadata(&body(&[Value::string("@setDataFrame")])), None);
        assert_eq!(on_metadata(&body(&[Value::string("onMetaData")])), None);
        assert_eq!(
            on_metadata(&Bytes::from_static(b"\x02\x00\x0aonMetaData\x03\x00")),
            None
        );
        assert_eq!(on_metadata(&Bytes::new()), None);
        assert_eq!(properties(b"\x02\x00\x05other\x05"), None);
    }

    #[test]
    fn decoded_values_are_re_encoded_as_amf0() {
        let values = [
            Value::string("@setDataFrame"),
            Value::string("onMetaData"),
            props(),
        ];
        let b = on_metadata_values(&values).unwrap();
        assert_eq!(b, body(&values[1..]));
        assert_eq!(on_metadata_values(&values[1..]), Some(b));
        assert_eq!(on_metadata_values(&values[..2]), None);
        assert_eq!(
            on_metadata_values(&[Value::string("onTextData"), props()]),
            None
        );
    }
}
