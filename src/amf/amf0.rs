//! AMF0: decoding every AMF0 type (with the AMF3 switch marker) under size, depth and
//! reference caps, and encoding the types the server sends. No message or command semantics.

use super::{amf3, weight, AmfError, Value, CLONE_BUDGET, MAX_DEPTH, MAX_ELEMENTS};
use crate::codec::bytes::Reader;

const NUMBER: u8 = 0x00;
const BOOLEAN: u8 = 0x01;
const STRING: u8 = 0x02;
const OBJECT: u8 = 0x03;
const NULL: u8 = 0x05;
const UNDEFINED: u8 = 0x06;
const REFERENCE: u8 = 0x07;
const ECMA_ARRAY: u8 = 0x08;
const OBJECT_END: u8 = 0x09;
const STRICT_ARRAY: u8 = 0x0a;
const DATE: u8 = 0x0b;
const LONG_STRING: u8 = 0x0c;
const UNSUPPORTED: u8 = 0x0d;
const XML_DOCUMENT: u8 = 0x0f;
const TYPED_OBJECT: u8 = 0x10;
const AVMPLUS: u8 = 0x11;

/// Decodes one value from the front of `buf`; returns it and the number of bytes it used.
pub fn decode(buf: &[u8]) -> Result<(Value, usize), AmfError> {
    let mut d = Decoder::new(buf);
    let v = d.value(0)?;
    Ok((v, d.r.pos()))
}

/// Decodes values until the buffer ends. References (0x07) may point at objects of earlier
/// values in the same buffer, as in one AMF0 message body.
pub fn decode_all(buf: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut d = Decoder::new(buf);
    let mut values = Vec::new();
    while d.r.remaining() > 0 {
        if values.len() >= MAX_ELEMENTS {
            return Err(AmfError::TooLarge);
        }
        values.push(d.value(0)?);
    }
    Ok(values)
}

/// Appends the AMF0 encoding of `v` to `out`.
pub fn encode(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Number(n) => {
            out.push(NUMBER);
            out.extend_from_slice(&n.to_be_bytes());
        }
        Value::Boolean(b) => {
            out.push(BOOLEAN);
            out.push(*b as u8);
        }
        Value::String(s) => {
            if s.len() <= u16::MAX as usize {
                out.push(STRING);
                put_short_str(s, out);
            } else {
                out.push(LONG_STRING);
                put_long_str(s, out);
            }
        }
        Value::Object(props) => {
            out.push(OBJECT);
            put_props(props, out);
        }
        Value::Null => out.push(NULL),
        Value::Undefined => out.push(UNDEFINED),
        Value::EcmaArray(props) => {
            out.push(ECMA_ARRAY);
            out.extend_from_slice(&(props.len().min(u32::MAX as usize) as u32).to_be_bytes());
            put_props(props, out);
        }
        Value::StrictArray(items) => {
            out.push(STRICT_ARRAY);
            let n = items.len().min(u32::MAX as usize);
            out.extend_from_slice(&(n as u32).to_be_bytes());
            for item in &items[..n] {
                encode(item, out);
            }
        }
        Value::Date(ms, tz) => {
            out.push(DATE);
            out.extend_from_slice(&ms.to_be_bytes());
            out.extend_from_slice(&tz.to_be_bytes());
        }
        Value::Xml(s) => {
            out.push(XML_DOCUMENT);
            put_long_str(s, out);
        }
    }
}

/// The values one after another, as in a command message body.
pub fn encode_all(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        encode(v, &mut out);
    }
    out
}

/// The longest prefix of `s` that fits in `max` bytes and ends on a character boundary
/// (names and strings longer than their length field cannot be sent whole).
fn clip(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn put_short_str(s: &str, out: &mut Vec<u8>) {
    let s = clip(s, u16::MAX as usize);
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_long_str(s: &str, out: &mut Vec<u8>) {
    let s = clip(s, u32::MAX as usize);
    out.extend_from_slice(&(s.len() as u32).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_props(props: &[(String, Value)], out: &mut Vec<u8>) {
    for (k, v) in props {
        put_short_str(k, out);
        encode(v, out);
    }
    out.extend_from_slice(&[0, 0, OBJECT_END]);
}

struct Decoder<'a> {
    r: Reader<'a, AmfError>,
    /// Complex values (object, typed object, ECMA array, strict array) in the order they
    /// started, for 0x07 references; `None` while the value is still being decoded (a
    /// reference to it would be a cycle) and its weight beside it.
    refs: Vec<Option<(Value, usize)>>,
    clone_budget: usize,
}

impl<'a> Decoder<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Decoder {
            r: Reader::new(buf),
            refs: Vec::new(),
            clone_budget: CLONE_BUDGET,
        }
    }

    /// `take` checks the length against the bytes left before anything is allocated.
    fn text(&mut self, len: usize) -> Result<String, AmfError> {
        let b = self.r.take(len)?;
        std::str::from_utf8(b)
            .map(str::to_string)
            .map_err(|_| AmfError::BadUtf8)
    }

    fn short_str(&mut self) -> Result<String, AmfError> {
        let len = self.r.u16()? as usize;
        self.text(len)
    }

    fn long_str(&mut self) -> Result<String, AmfError> {
        let len = self.r.u32()? as usize;
        self.text(len)
    }

    fn value(&mut self, depth: usize) -> Result<Value, AmfError> {
        let marker = self.r.u8()?;
        match marker {
            NUMBER => Ok(Value::Number(self.r.f64()?)),
            BOOLEAN => Ok(Value::Boolean(self.r.u8()? != 0)),
            STRING => Ok(Value::String(self.short_str()?)),
            LONG_STRING => Ok(Value::String(self.long_str()?)),
            XML_DOCUMENT => Ok(Value::Xml(self.long_str()?)),
            NULL => Ok(Value::Null),
            UNDEFINED | UNSUPPORTED => Ok(Value::Undefined),
            DATE => {
                let ms = self.r.f64()?;
                let tz = self.r.u16()? as i16;
                Ok(Value::Date(ms, tz))
            }
            REFERENCE => {
                let idx = self.r.u16()? as usize;
                match self.refs.get(idx) {
                    Some(Some((v, w))) => {
                        if *w > self.clone_budget {
                            return Err(AmfError::TooLarge);
                        }
                        self.clone_budget -= *w;
                        Ok(v.clone())
                    }
                    _ => Err(AmfError::BadReference),
                }
            }
            OBJECT => self.complex(depth, |d| Ok(Value::Object(d.props(depth)?))),
            TYPED_OBJECT => self.complex(depth, |d| {
                // The class name only matters to Flash's deserialiser; commands never need it.
                d.short_str()?;
                Ok(Value::Object(d.props(depth)?))
            }),
            ECMA_ARRAY => self.complex(depth, |d| {
                // The count is a hint that some encoders get wrong; the end marker decides.
                d.r.u32()?;
                Ok(Value::EcmaArray(d.props(depth)?))
            }),
            STRICT_ARRAY => self.complex(depth, |d| {
                let n = d.r.u32()? as usize;
                if n > MAX_ELEMENTS {
                    return Err(AmfError::TooLarge);
                }
                // Every element takes at least its marker byte.
                if n > d.r.remaining() {
                    return Err(AmfError::Truncated);
                }
                let mut items = Vec::with_capacity(n);
                for _ in 0..n {
                    items.push(d.value(depth + 1)?);
                }
                Ok(Value::StrictArray(items))
            }),
            AVMPLUS => {
                let (v, used) = amf3::decode_nested(self.r.rest(), depth)?;
                self.r.skip(used)?;
                Ok(v)
            }
            other => Err(AmfError::UnknownMarker(other)),
        }
    }

    /// Decodes a value that takes a reference-table slot, reserving the slot first so that
    /// the slot numbers follow the order in which the values start.
    fn complex(
        &mut self,
        depth: usize,
        body: impl FnOnce(&mut Self) -> Result<Value, AmfError>,
    ) -> Result<Value, AmfError> {
        if depth >= MAX_DEPTH {
            return Err(AmfError::TooDeep);
        }
        let slot = self.refs.len();
        if slot < u16::MAX as usize + 1 {
            self.refs.push(None);
        }
        let v = body(self)?;
        if slot < self.refs.len() {
            self.refs[slot] = Some((v.clone(), weight(&v)));
        }
        Ok(v)
    }

    /// Name/value pairs up to the empty name followed by the object-end marker.
    fn props(&mut self, depth: usize) -> Result<Vec<(String, Value)>, AmfError> {
        let mut props = Vec::new();
        loop {
            let key = self.short_str()?;
            if key.is_empty() && self.r.peek() == Some(OBJECT_END) {
                self.r.skip(1)?;
                return Ok(props);
            }
            if props.len() >= MAX_ELEMENTS {
                return Err(AmfError::TooLarge);
            }
            let v = self.value(depth + 1)?;
            props.push((key, v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(v: Value) {
        let mut out = Vec::new();
        encode(&v, &mut out);
        let (back, used) = decode(&out).unwrap();
        assert_eq!(back, v);
        assert_eq!(used, out.len());
    }

    #[test]
    fn round_trips_every_encodable_type() {
        round_trip(Value::Number(0.0));
        round_trip(Value::Number(-1.5e300));
        round_trip(Value::Boolean(true));
        round_trip(Value::Boolean(false));
        round_trip(Value::string(""));
        round_trip(Value::string("héllo"));
        round_trip(Value::String("x".repeat(70_000)));
        round_trip(Value::Null);
        round_trip(Value::Undefined);
        round_trip(Value::Date(1_600_000_000_000.0, 0));
        round_trip(Value::Xml("<a/>".into()));
        round_trip(Value::object([
            ("a", Value::Number(1.0)),
            ("b", Value::object([("c", Value::Null)])),
        ]));
        round_trip(Value::Object(vec![]));
        round_trip(Value::EcmaArray(vec![
            ("duration".into(), Value::Number(0.0)),
            ("encoder".into(), Value::string("Lavf")),
        ]));
        round_trip(Value::StrictArray(vec![
            Value::Number(1.0),
            Value::string("two"),
            Value::StrictArray(vec![]),
        ]));
    }

    #[test]
    fn long_string_marker_above_65535_bytes() {
        let mut out = Vec::new();
        encode(&Value::String("y".repeat(65_535)), &mut out);
        assert_eq!(out[0], STRING);
        out.clear();
        encode(&Value::String("y".repeat(65_536)), &mut out);
        assert_eq!(out[0], LONG_STRING);
    }

    /// The connect command FFmpeg sends when publishing, byte for byte.
    fn ffmpeg_connect() -> Vec<u8> {
        let mut b = vec![0x02, 0x00, 0x07];
        b.extend_from_slice(b"connect");
        b.push(0x00);
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.push(0x03);
        for (k, v) in [
            ("app", "live"),
            ("type", "nonprivate"),
            ("flashVer", "FMLE/3.0 (compatible; FMSc/1.0)"),
            ("tcUrl", "rtmp://127.0.0.1:1935/live"),
        ] {
            b.extend_from_slice(&(k.len() as u16).to_be_bytes());
            b.extend_from_slice(k.as_bytes());
            b.push(0x02);
            b.extend_from_slice(&(v.len() as u16).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b.extend_from_slice(&[0, 0, 9]);
        b
    }

    #[test]
    fn decodes_ffmpeg_connect() {
        let bytes = ffmpeg_connect();
        let values = decode_all(&bytes).unwrap();
        assert_eq!(values.len(), 3);
        assert_eq!(values[0].as_str(), Some("connect"));
        assert_eq!(values[1].as_f64(), Some(1.0));
        assert_eq!(values[2].get("app").and_then(Value::as_str), Some("live"));
        assert_eq!(
            values[2].get("tcUrl").and_then(Value::as_str),
            Some("rtmp://127.0.0.1:1935/live")
        );
        assert_eq!(
            values[2].get("flashVer").and_then(Value::as_str),
            Some("FMLE/3.0 (compatible; FMSc/1.0)")
        );
        // And our encoder produces the same bytes.
        assert_eq!(encode_all(&values), bytes);
    }

    #[test]
    fn truncation_at_every_split_point() {
        let mut samples = vec![ffmpeg_connect()];
        samples.push(encode_all(&[
            Value::EcmaArray(vec![("w".into(), Value::Number(640.0))]),
            Value::StrictArray(vec![Value::Boolean(true), Value::Date(1.0, 0)]),
            Value::Xml("<x/>".into()),
            Value::String("z".repeat(70_000)),
        ]));
        for bytes in samples {
            for cut in 0..bytes.len() {
                // A cut inside the first value is Truncated; decode_all sees a cut value too,
                // unless the cut falls exactly between two values.
                let r = decode_all(&bytes[..cut]);
                if let Err(e) = r {
                    assert_eq!(e, AmfError::Truncated, "cut at {cut}");
                }
                if cut > 0 {
                    match decode(&bytes[..cut]) {
                        Ok((_, used)) => assert!(used <= cut),
                        Err(e) => assert_eq!(e, AmfError::Truncated, "cut at {cut}"),
                    }
                }
            }
        }
        assert_eq!(decode(&[]), Err(AmfError::Truncated));
    }

    #[test]
    fn ecma_array_with_wrong_count_and_typed_object() {
        let mut b = vec![ECMA_ARRAY, 0, 0, 0, 7];
        b.extend_from_slice(&[0, 1, b'k', NUMBER]);
        b.extend_from_slice(&2.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9]);
        let (v, used) = decode(&b).unwrap();
        assert_eq!(used, b.len());
        assert_eq!(v, Value::EcmaArray(vec![("k".into(), Value::Number(2.0))]));

        let mut t = vec![
            TYPED_OBJECT,
            0,
            3,
            b'C',
            b'l',
            b's',
            0,
            1,
            b'a',
            NULL,
            0,
            0,
            9,
        ];
        let (v, _) = decode(&t).unwrap();
        assert_eq!(v, Value::Object(vec![("a".into(), Value::Null)]));
        t.truncate(5);
        assert_eq!(decode(&t), Err(AmfError::Truncated));
    }

    #[test]
    fn references_resolve_to_earlier_objects() {
        // [ {a: 1}, ref 1 ] : slot 0 is the strict array, slot 1 the object.
        let mut b = vec![STRICT_ARRAY, 0, 0, 0, 2, OBJECT, 0, 1, b'a', NUMBER];
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend_from_slice(&[0, 0, 9, REFERENCE, 0, 1]);
        let (v, _) = decode(&b).unwrap();
        let obj = Value::object([("a", Value::Number(1.0))]);
        assert_eq!(v, Value::StrictArray(vec![obj.clone(), obj]));
        // A reference to the array that contains it is a cycle.
        let mut cyc = vec![STRICT_ARRAY, 0, 0, 0, 1, REFERENCE, 0, 0];
        assert_eq!(decode(&cyc), Err(AmfError::BadReference));
        cyc[7] = 9;
        assert_eq!(decode(&cyc), Err(AmfError::BadReference));
    }

    #[test]
    fn reference_bomb_is_capped() {
        // Each array holds two references to the previous one: 2^n clones from a few bytes.
        let mut b = vec![STRICT_ARRAY, 0, 0, 0, 40, STRICT_ARRAY, 0, 0, 0, 1];
        b.extend_from_slice(&[STRING, 0, 200]);
        b.extend(std::iter::repeat_n(b'x', 200));
        for i in 1..40u16 {
            b.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 2, REFERENCE]);
            b.extend_from_slice(&i.to_be_bytes());
            b.push(REFERENCE);
            b.extend_from_slice(&i.to_be_bytes());
        }
        assert_eq!(decode(&b), Err(AmfError::TooLarge));
    }

    #[test]
    fn depth_bomb_is_too_deep() {
        let mut b = Vec::new();
        for _ in 0..10_000 {
            b.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        b.push(NULL);
        assert_eq!(decode(&b), Err(AmfError::TooDeep));
        let mut o = Vec::new();
        for _ in 0..10_000 {
            o.extend_from_slice(&[OBJECT, 0, 1, b'a']);
        }
        assert_eq!(decode(&o), Err(AmfError::TooDeep));
        // Exactly MAX_DEPTH levels is fine.
        let mut ok = Vec::new();
        for _ in 0..MAX_DEPTH {
            ok.extend_from_slice(&[STRICT_ARRAY, 0, 0, 0, 1]);
        }
        ok.push(NULL);
        assert!(decode(&ok).is_ok());
    }

    #[test]
    fn huge_declared_lengths_do_not_allocate() {
        assert_eq!(
            decode(&[LONG_STRING, 0xff, 0xff, 0xff, 0xff, b'a']),
            Err(AmfError::Truncated)
        );
        assert_eq!(
            decode(&[XML_DOCUMENT, 0xff, 0xff, 0xff, 0xff]),
            Err(AmfError::Truncated)
        );
        assert_eq!(
            decode(&[STRICT_ARRAY, 0xff, 0xff, 0xff, 0xff, NULL]),
            Err(AmfError::TooLarge)
        );
        assert_eq!(
            decode(&[STRICT_ARRAY, 0, 0, 0x10, 0, NULL]),
            Err(AmfError::Truncated)
        );
        assert_eq!(
            decode(&[STRING, 0xff, 0xff, b'a']),
            Err(AmfError::Truncated)
        );
    }

    #[test]
    fn mutated_input_never_panics() {
        let mut clean = ffmpeg_connect();
        clean.extend(encode_all(&[
            Value::EcmaArray(vec![("w".into(), Value::StrictArray(vec![Value::Null]))]),
            Value::Date(5.0, 0),
        ]));
        // AMF3 behind the switch marker: an object with traits and a reference.
        clean.extend_from_slice(&[AVMPLUS, 0x09, 0x05, 0x01, 0x0a, 0x13, 0x01, 0x03, b'a']);
        clean.extend_from_slice(&[0x04, 0x01, 0x0a, 0x02]);
        assert!(decode_all(&clean).is_ok());
        let mut seed = 0x9e37_79b9_u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..5000 {
            let mut b = clean.clone();
            for _ in 0..1 + next() % 4 {
                let i = (next() % b.len() as u64) as usize;
                b[i] = next() as u8;
            }
            let _ = decode_all(&b);
        }
    }

    #[test]
    fn odd_markers() {
        assert_eq!(decode(&[UNSUPPORTED]).unwrap().0, Value::Undefined);
        assert_eq!(decode(&[0x04]), Err(AmfError::UnknownMarker(0x04)));
        assert_eq!(decode(&[OBJECT_END]), Err(AmfError::UnknownMarker(0x09)));
        assert_eq!(decode(&[0x0e]), Err(AmfError::UnknownMarker(0x0e)));
        assert_eq!(decode(&[STRING, 0, 1, 0xff]), Err(AmfError::BadUtf8));
    }

    #[test]
    fn amf3_switch_marker() {
        // AMF3 integer 5 and AMF3 string "hi" behind the switch marker.
        let b = [AVMPLUS, 0x04, 0x05, AVMPLUS, 0x06, 0x05, b'h', b'i'];
        assert_eq!(
            decode_all(&b).unwrap(),
            vec![Value::Number(5.0), Value::string("hi")]
        );
        // AMF3 message bodies (a format byte first) are `rtmp::message::decode_message`'s.
    }
}
