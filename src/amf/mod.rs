//! AMF0 and AMF3 values: the `Value` type shared by both, with decoders that cap sizes and
//! nesting depth (every input is hostile) and encoders for what the server sends.

pub mod amf0;
pub mod amf3;

/// An AMF value. AMF3-only types are mapped onto the nearest AMF0 shape by the AMF3 decoder
/// (integer -> Number, array -> StrictArray or EcmaArray, ...), so command handling sees one type.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// String and long string.
    String(String),
    /// Anonymous or typed object: ordered properties (a typed object's class name is dropped).
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch and the time-zone field (always 0 on the wire in practice).
    Date(f64, i16),
    /// AMF0 XML document / AMF3 XML: kept as text.
    Xml(String),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The property `name` of an Object or ECMA array.
    pub fn get(&self, name: &str) -> Option<&Value> {
        match self {
            Value::Object(props) | Value::EcmaArray(props) => {
                props.iter().find(|(k, _)| k == name).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    /// Shorthand for an Object from `(&str, Value)` pairs.
    pub fn object<const N: usize>(props: [(&str, Value); N]) -> Value {
        Value::Object(props.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
    }

    pub fn string(s: &str) -> Value {
        Value::String(s.to_string())
    }
}

/// Why a decode failed. A decode error means the peer broke the format; the caller closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AmfError {
    /// The buffer ended in the middle of a value.
    Truncated,
    /// A type marker this decoder does not know.
    UnknownMarker(u8),
    /// Objects/arrays nested deeper than `MAX_DEPTH`.
    TooDeep,
    /// A string, array or object larger than the caps allow.
    TooLarge,
    /// A string that is not UTF-8.
    BadUtf8,
    /// An AMF3 reference to an object or string not seen before.
    BadReference,
}

impl crate::codec::bytes::Truncated for AmfError {
    fn truncated() -> Self {
        AmfError::Truncated
    }
}

/// Maximum nesting of objects and arrays.
pub const MAX_DEPTH: usize = 32;
/// Maximum number of elements in one array or properties in one object.
pub const MAX_ELEMENTS: usize = 65_536;

impl std::fmt::Display for AmfError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AmfError::Truncated => f.write_str("AMF value truncated"),
            AmfError::UnknownMarker(m) => write!(f, "unknown AMF type marker 0x{m:02x}"),
            AmfError::TooDeep => f.write_str("AMF values nested too deeply"),
            AmfError::TooLarge => f.write_str("AMF value too large"),
            AmfError::BadUtf8 => f.write_str("AMF string is not UTF-8"),
            AmfError::BadReference => f.write_str("AMF3 reference to an unknown value"),
        }
    }
}

impl std::error::Error for AmfError {}

/// Total bytes a decoder may spend cloning referenced values (AMF0 0x07, AMF3 references) in
/// one call: references let a few input bytes name a large value many times over, so without a
/// budget a small message could expand into gigabytes.
pub(crate) const CLONE_BUDGET: usize = 16 << 20;

/// An estimate of the memory a value occupies: a fixed cost per node plus its text. Used to
/// charge reference clones against `CLONE_BUDGET`.
pub(crate) fn weight(v: &Value) -> usize {
    const NODE: usize = 32;
    match v {
        Value::String(s) | Value::Xml(s) => NODE + s.len(),
        Value::Object(props) | Value::EcmaArray(props) => props.iter().fold(NODE, |acc, (k, v)| {
            acc.saturating_add(NODE + k.len()).saturating_add(weight(v))
        }),
        Value::StrictArray(items) => items
            .iter()
            .fold(NODE, |acc, v| acc.saturating_add(weight(v))),
        _ => NODE,
    }
}
