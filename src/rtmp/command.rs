//! RTMP commands as typed values: `Command::parse` turns the AMF values of a command message into
//! name / transaction id / command object / arguments, and the builders here make every reply and
//! request the sessions send. No chunking, no state: the sessions in `session.rs` and `client.rs`
//! decide what to send and when.

use crate::amf::{amf0, Value};
use bytes::Bytes;
use std::fmt;

/// What the server says it is; Flash-era clients and some encoders look at `fmsVer`.
pub const FMS_VERSION: &str = "FMS/3,0,1,123";
/// `capabilities` in the connect reply (the value FMS and nginx-rtmp send).
pub const FMS_CAPABILITIES: f64 = 31.0;

/// One command message: `name`, `transaction id`, `command object` (Null when absent), arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Command {
    pub name: String,
    /// Kept as the peer sent it (an AMF number) so replies echo it exactly; 0 means "no reply wanted".
    pub transaction_id: f64,
    pub object: Value,
    pub args: Vec<Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandError {
    /// The message held no AMF value at all.
    Empty,
    /// The first value, the command name, is not a string.
    NameNotString,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Empty => f.write_str("empty command message"),
            CommandError::NameNotString => f.write_str("command name is not a string"),
        }
    }
}

impl std::error::Error for CommandError {}

impl Command {
    /// Reads `name, txn, object, args...`. A missing or non-number transaction id reads as 0 and a
    /// missing command object as Null: real clients are sloppy there and nothing depends on it.
    pub fn parse(values: Vec<Value>) -> Result<Command, CommandError> {
        let mut it = values.into_iter();
        let name = match it.next() {
            None => return Err(CommandError::Empty),
            Some(Value::String(s)) => s,
            Some(_) => return Err(CommandError::NameNotString),
        };
        let transaction_id = match it.next() {
            Some(Value::Number(n)) if n.is_finite() => n,
            _ => 0.0,
        };
        let object = it.next().unwrap_or(Value::Null);
        Ok(Command {
            name,
            transaction_id,
            object,
            args: it.collect(),
        })
    }

    pub fn new(name: &str, transaction_id: f64, object: Value, args: Vec<Value>) -> Command {
        Command {
            name: name.to_string(),
            transaction_id,
            object,
            args,
        }
    }

    /// The AMF values in wire order.
    pub fn to_values(&self) -> Vec<Value> {
        let mut v = Vec::with_capacity(3 + self.args.len());
        v.push(Value::String(self.name.clone()));
        v.push(Value::Number(self.transaction_id));
        v.push(self.object.clone());
        v.extend(self.args.iter().cloned());
        v
    }

    /// AMF0 payload of a command message (type 20).
    pub fn encode(&self) -> Bytes {
        Bytes::from(amf0::encode_all(&self.to_values()))
    }

    /// The whole command message on stream `stream_id` (AMF0, the command chunk stream).
    pub fn message(&self, stream_id: u32) -> crate::rtmp::message::Message {
        crate::rtmp::message::Message {
            csid: crate::codec::chunk::CSID_COMMAND,
            timestamp: 0,
            type_id: crate::rtmp::message::COMMAND_AMF0,
            stream_id,
            payload: self.encode(),
        }
    }

    /// True when the sender expects a `_result` / `_error` (a non-zero transaction id).
    pub fn wants_reply(&self) -> bool {
        self.transaction_id != 0.0
    }

    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i)
    }

    pub fn arg_str(&self, i: usize) -> Option<&str> {
        self.args.get(i).and_then(Value::as_str)
    }

    pub fn arg_f64(&self, i: usize) -> Option<f64> {
        self.args.get(i).and_then(Value::as_f64)
    }

    /// A boolean argument; some clients send 0/1 numbers instead.
    pub fn arg_bool(&self, i: usize) -> Option<bool> {
        match self.args.get(i)? {
            Value::Boolean(b) => Some(*b),
            Value::Number(n) => Some(*n != 0.0),
            _ => None,
        }
    }

    /// A string property of the command object (connect's `app`, `tcUrl`, ...).
    pub fn object_str(&self, name: &str) -> Option<&str> {
        self.object.get(name).and_then(Value::as_str)
    }
}

/// The `info` object of onStatus and of connect replies.
pub fn status_info(level: &str, code: &str, description: &str) -> Value {
    Value::object([
        ("level", Value::string(level)),
        ("code", Value::string(code)),
        ("description", Value::string(description)),
    ])
}

/// `_result` for connect. `object_encoding` echoes the client's (0 = AMF0, 3 = AMF3).
pub fn connect_result(transaction_id: f64, object_encoding: f64) -> Command {
    let props = Value::object([
        ("fmsVer", Value::string(FMS_VERSION)),
        ("capabilities", Value::Number(FMS_CAPABILITIES)),
    ]);
    let info = Value::object([
        ("level", Value::string("status")),
        ("code", Value::string("NetConnection.Connect.Success")),
        ("description", Value::string("Connection succeeded.")),
        ("objectEncoding", Value::Number(object_encoding)),
    ]);
    Command::new("_result", transaction_id, props, vec![info])
}

/// `_error` for connect (`NetConnection.Connect.Rejected` and the like).
pub fn connect_error(transaction_id: f64, code: &str, description: &str) -> Command {
    let props = Value::object([
        ("fmsVer", Value::string(FMS_VERSION)),
        ("capabilities", Value::Number(FMS_CAPABILITIES)),
    ]);
    Command::new(
        "_error",
        transaction_id,
        props,
        vec![status_info("error", code, description)],
    )
}

/// `_result` for createStream: the new message stream id.
pub fn create_stream_result(transaction_id: f64, stream_id: u32) -> Command {
    Command::new(
        "_result",
        transaction_id,
        Value::Null,
        vec![Value::Number(stream_id as f64)],
    )
}

/// A bare `_result` (releaseStream, FCPublish, FCUnpublish, _checkbw): null object, undefined.
pub fn simple_result(transaction_id: f64) -> Command {
    Command::new(
        "_result",
        transaction_id,
        Value::Null,
        vec![Value::Undefined],
    )
}

/// `_result` carrying one value (getStreamLength -> 0).
pub fn value_result(transaction_id: f64, value: Value) -> Command {
    Command::new("_result", transaction_id, Value::Null, vec![value])
}

/// `_error` for a command the server does not know or cannot do.
pub fn error_reply(transaction_id: f64, code: &str, description: &str) -> Command {
    Command::new(
        "_error",
        transaction_id,
        Value::Null,
        vec![status_info("error", code, description)],
    )
}

/// `onStatus` (transaction id 0, null object, info object).
pub fn on_status(level: &str, code: &str, description: &str) -> Command {
    Command::new(
        "onStatus",
        0.0,
        Value::Null,
        vec![status_info(level, code, description)],
    )
}

/// `onFCPublish`, carrying the FCPublish transaction id: some hardware encoders wait for a reply
/// that matches their request and hang without it.
pub fn on_fc_publish(transaction_id: f64, name: &str) -> Command {
    Command::new(
        "onFCPublish",
        transaction_id,
        Value::Null,
        vec![Value::object([
            ("code", Value::string("NetStream.Publish.Start")),
            (
                "description",
                Value::String(format!("FCPublish to stream {name}.")),
            ),
        ])],
    )
}

/// `onFCUnpublish`, carrying the FCUnpublish transaction id.
pub fn on_fc_unpublish(transaction_id: f64, name: &str) -> Command {
    Command::new(
        "onFCUnpublish",
        transaction_id,
        Value::Null,
        vec![Value::object([
            ("code", Value::string("NetStream.Unpublish.Success")),
            (
                "description",
                Value::String(format!("FCUnpublish to stream {name}.")),
            ),
        ])],
    )
}

/// `|RtmpSampleAccess` data message (AMF0, type 18): lets Flash players read audio and video.
pub fn sample_access() -> Bytes {
    Bytes::from(amf0::encode_all(&[
        Value::string("|RtmpSampleAccess"),
        Value::Boolean(true),
        Value::Boolean(true),
    ]))
}

/// `onMetaData` data message body (AMF0, type 18) from a metadata object or ECMA array.
pub fn on_metadata(metadata: &Value) -> Bytes {
    Bytes::from(amf0::encode_all(&[
        Value::string("onMetaData"),
        metadata.clone(),
    ]))
}

// ---- requests a client sends ----

/// `connect` as FFmpeg sends it for publishing and playing.
pub fn connect(transaction_id: f64, app: &str, tc_url: &str) -> Command {
    let object = Value::object([
        ("app", Value::string(app)),
        ("type", Value::string("nonprivate")),
        ("flashVer", Value::string("FMLE/3.0 (compatible; rtmpd)")),
        ("tcUrl", Value::string(tc_url)),
        ("fpad", Value::Boolean(false)),
        ("capabilities", Value::Number(15.0)),
        ("audioCodecs", Value::Number(4071.0)),
        ("videoCodecs", Value::Number(252.0)),
        ("videoFunction", Value::Number(1.0)),
        ("objectEncoding", Value::Number(0.0)),
    ]);
    Command::new("connect", transaction_id, object, vec![])
}

/// `createStream`, `releaseStream(name)`, `FCPublish(name)`, `FCUnpublish(name)`.
pub fn simple_request(name: &str, transaction_id: f64, arg: Option<&str>) -> Command {
    Command::new(
        name,
        transaction_id,
        Value::Null,
        arg.map(|a| vec![Value::string(a)]).unwrap_or_default(),
    )
}

/// `publish(name, "live")`.
pub fn publish(transaction_id: f64, name: &str) -> Command {
    Command::new(
        "publish",
        transaction_id,
        Value::Null,
        vec![Value::string(name), Value::string("live")],
    )
}

/// `play(name, start = -2000)`: "live if there is one, else recorded", like FFmpeg.
pub fn play(transaction_id: f64, name: &str) -> Command {
    Command::new(
        "play",
        transaction_id,
        Value::Null,
        vec![Value::string(name), Value::Number(-2000.0)],
    )
}

/// `deleteStream(stream_id)`.
pub fn delete_stream(transaction_id: f64, stream_id: u32) -> Command {
    Command::new(
        "deleteStream",
        transaction_id,
        Value::Null,
        vec![Value::Number(stream_id as f64)],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_full_and_sloppy() {
        let c = Command::parse(vec![
            Value::string("publish"),
            Value::Number(5.0),
            Value::Null,
            Value::string("key?token=a"),
            Value::string("live"),
        ])
        .unwrap();
        assert_eq!(c.name, "publish");
        assert_eq!(c.transaction_id, 5.0);
        assert!(c.wants_reply());
        assert_eq!(c.arg_str(0), Some("key?token=a"));
        assert_eq!(c.arg_str(1), Some("live"));
        assert_eq!(c.arg_str(2), None);

        let bare = Command::parse(vec![Value::string("FCSubscribe")]).unwrap();
        assert_eq!(bare.transaction_id, 0.0);
        assert_eq!(bare.object, Value::Null);
        assert!(bare.args.is_empty() && !bare.wants_reply());

        assert_eq!(Command::parse(vec![]), Err(CommandError::Empty));
        assert_eq!(
            Command::parse(vec![Value::Number(1.0)]),
            Err(CommandError::NameNotString)
        );
    }

    #[test]
    fn values_round_trip_through_amf0() {
        let c = connect_result(1.0, 3.0);
        let values = amf0::decode_all(&c.encode()).unwrap();
        let back = Command::parse(values).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.object_str("fmsVer"), Some(FMS_VERSION));
        let info = back.arg(0).unwrap();
        assert_eq!(
            info.get("code").and_then(Value::as_str),
            Some("NetConnection.Connect.Success")
        );
        assert_eq!(info.get("objectEncoding"), Some(&Value::Number(3.0)));
    }

    #[test]
    fn fc_publish_carries_transaction_id() {
        let c = on_fc_publish(7.0, "cam");
        assert_eq!(c.transaction_id, 7.0);
        assert_eq!(
            c.arg(0).and_then(|v| v.get("code")).and_then(Value::as_str),
            Some("NetStream.Publish.Start")
        );
    }

    #[test]
    fn data_messages() {
        let v = amf0::decode_all(&sample_access()).unwrap();
        assert_eq!(
            v,
            vec![
                Value::string("|RtmpSampleAccess"),
                Value::Boolean(true),
                Value::Boolean(true)
            ]
        );
        let meta = Value::EcmaArray(vec![("width".into(), Value::Number(160.0))]);
        let v = amf0::decode_all(&on_metadata(&meta)).unwrap();
        assert_eq!(v, vec![Value::string("onMetaData"), meta]);
    }

    #[test]
    fn bool_args_accept_numbers() {
        let c = Command::parse(vec![
            Value::string("pause"),
            Value::Number(0.0),
            Value::Null,
            Value::Number(1.0),
            Value::Boolean(false),
        ])
        .unwrap();
        assert_eq!(c.arg_bool(0), Some(true));
        assert_eq!(c.arg_bool(1), Some(false));
        assert_eq!(c.arg_bool(2), None);
    }
}
