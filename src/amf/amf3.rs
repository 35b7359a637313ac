//! AMF3 decoding (for AMF3 command/data messages and the AMF0 switch marker), mapped onto
//! `Value` under size, depth and reference caps. No encoder: the server only answers in AMF0.

use super::{weight, AmfError, Value, CLONE_BUDGET, MAX_DEPTH, MAX_ELEMENTS};
use crate::codec::bytes::Reader;

const UNDEFINED: u8 = 0x00;
const NULL: u8 = 0x01;
const FALSE: u8 = 0x02;
const TRUE: u8 = 0x03;
const INTEGER: u8 = 0x04;
const DOUBLE: u8 = 0x05;
const STRING: u8 = 0x06;
const XML_DOC: u8 = 0x07;
const DATE: u8 = 0x08;
const ARRAY: u8 = 0x09;
const OBJECT: u8 = 0x0a;
const XML: u8 = 0x0b;
const BYTE_ARRAY: u8 = 0x0c;

/// Decodes one AMF3 value (with its own string, object and trait reference tables) from the
/// front of `buf`; returns it and the number of bytes used.
///
/// Mapping: integer and double -> Number, array -> StrictArray when it has only dense
/// elements, else EcmaArray (associative part first, then dense elements named "0", "1", ...),
/// object -> Object (sealed then dynamic members; class name dropped), date -> Date(ms, 0),
/// xml and xml-doc -> Xml, byte array -> Undefined (content skipped: no command carries one).
/// Externalizable objects are `UnknownMarker(0x0a)` (their body format is class-specific, so
/// they cannot be skipped); vectors and dictionaries are `UnknownMarker` with their marker.
pub fn decode(buf: &[u8]) -> Result<(Value, usize), AmfError> {
    decode_nested(buf, 0)
}

/// `decode` for a value that sits `depth` containers deep inside AMF0 (the switch marker), so
/// that the depth cap covers both formats together.
pub(crate) fn decode_nested(buf: &[u8], depth: usize) -> Result<(Value, usize), AmfError> {
    let mut d = Decoder {
        r: Reader::new(buf),
        strings: Vec::new(),
        objects: Vec::new(),
        traits: Vec::new(),
        clone_budget: CLONE_BUDGET,
    };
    let v = d.value(depth)?;
    Ok((v, d.r.pos()))
}

struct Traits {
    dynamic: bool,
    sealed: Vec<String>,
}

struct Decoder<'a> {
    r: Reader<'a, AmfError>,
    strings: Vec<String>,
    /// Objects, arrays, dates, xml and byte arrays in the order they started; `None` while
    /// one is still being decoded (a reference to it would be a cycle), with its weight.
    objects: Vec<Option<(Value, usize)>>,
    traits: Vec<Traits>,
    clone_budget: usize,
}

impl<'a> Decoder<'a> {
    /// U29: 7 bits per byte with a continuation bit for three bytes, then a full fourth byte.
    fn u29(&mut self) -> Result<u32, AmfError> {
        let mut v: u32 = 0;
        for _ in 0..3 {
            let b = self.r.u8()?;
            v = (v << 7) | (b & 0x7f) as u32;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        let b = self.r.u8()?;
        Ok((v << 8) | b as u32)
    }

    fn charge(&mut self, w: usize) -> Result<(), AmfError> {
        if w > self.clone_budget {
            return Err(AmfError::TooLarge);
        }
        self.clone_budget -= w;
        Ok(())
    }

    /// UTF-8-vr: a string-table reference or an inline string (added to the table unless empty).
    fn string(&mut self) -> Result<String, AmfError> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = (h >> 1) as usize;
            let s = self.strings.get(idx).ok_or(AmfError::BadReference)?.clone();
            self.charge(32 + s.len())?;
            return Ok(s);
        }
        let len = (h >> 1) as usize;
        let b = self.r.take(len)?;
        let s = std::str::from_utf8(b)
            .map_err(|_| AmfError::BadUtf8)?
            .to_string();
        if !s.is_empty() {
            self.strings.push(s.clone());
        }
        Ok(s)
    }

    /// The shared prefix of object-table types: `Ok(Err(value))` for a reference already
    /// resolved, `Ok(Ok(h >> 1))` for an inline value whose slot the caller fills.
    fn object_header(&mut self) -> Result<Result<(u32, usize), Value>, AmfError> {
        let h = self.u29()?;
        if h & 1 == 0 {
            let idx = (h >> 1) as usize;
            return match self.objects.get(idx) {
                Some(Some((v, w))) => {
                    let (v, w) = (v.clone(), *w);
                    self.charge(w)?;
                    Ok(Err(v))
                }
                _ => Err(AmfError::BadReference),
            };
        }
        let slot = self.objects.len();
        self.objects.push(None);
        Ok(Ok((h >> 1, slot)))
    }

    fn fill(&mut self, slot: usize, v: Value) -> Value {
        let w = weight(&v);
        self.objects[slot] = Some((v.clone(), w));
        v
    }

    fn value(&mut self, depth: usize) -> Result<Value, AmfError> {
        let marker = self.r.u8()?;
        match marker {
            UNDEFINED => Ok(Value::Undefined),
            NULL => Ok(Value::Null),
            FALSE => Ok(Value::Boolean(false)),
            TRUE => Ok(Value::Boolean(true)),
            INTEGER => {
                let v = self.u29()?;
                // Sign-extend the 29-bit two's complement value.
                let signed = ((v << 3) as i32) >> 3;
                Ok(Value::Number(signed as f64))
            }
            DOUBLE => Ok(Value::Number(self.r.f64()?)),
            STRING => Ok(Value::String(self.string()?)),
            XML_DOC | XML => match self.object_header()? {
                Err(v) => Ok(v),
                Ok((len, slot)) => {
                    let b = self.r.take(len as usize)?;
                    let s = std::str::from_utf8(b).map_err(|_| AmfError::BadUtf8)?;
                    Ok(self.fill(slot, Value::Xml(s.to_string())))
                }
            },
            DATE => match self.object_header()? {
                Err(v) => Ok(v),
                Ok((_, slot)) => {
                    let ms = self.r.f64()?;
                    Ok(self.fill(slot, Value::Date(ms, 0)))
                }
            },
            BYTE_ARRAY => match self.object_header()? {
                Err(v) => Ok(v),
                Ok((len, slot)) => {
                    self.r.take(len as usize)?;
                    Ok(self.fill(slot, Value::Undefined))
                }
            },
            ARRAY => {
                if depth >= MAX_DEPTH {
                    return Err(AmfError::TooDeep);
                }
                match self.object_header()? {
                    Err(v) => Ok(v),
                    Ok((dense, slot)) => {
                        let v = self.array(dense as usize, depth)?;
                        Ok(self.fill(slot, v))
                    }
                }
            }
            OBJECT => {
                if depth >= MAX_DEPTH {
                    return Err(AmfError::TooDeep);
                }
                match self.object_header()? {
                    Err(v) => Ok(v),
                    Ok((h, slot)) => {
                        let v = self.object(h, depth)?;
                        Ok(self.fill(slot, v))
                    }
                }
            }
            other => Err(AmfError::UnknownMarker(other)),
        }
    }

    fn array(&mut self, dense: usize, depth: usize) -> Result<Value, AmfError> {
        if dense > MAX_ELEMENTS {
            return Err(AmfError::TooLarge);
        }
        let mut assoc = Vec::new();
        loop {
            let key = self.string()?;
            if key.is_empty() {
                break;
            }
            if assoc.len() >= MAX_ELEMENTS {
                return Err(AmfError::TooLarge);
            }
            let v = self.value(depth + 1)?;
            assoc.push((key, v));
        }
        // Every dense element takes at least its marker byte.
        if dense > self.r.remaining() {
            return Err(AmfError::Truncated);
        }
        let mut items = Vec::with_capacity(dense);
        for _ in 0..dense {
            items.push(self.value(depth + 1)?);
        }
        if assoc.is_empty() {
            return Ok(Value::StrictArray(items));
        }
        if assoc.len() + items.len() > MAX_ELEMENTS {
            return Err(AmfError::TooLarge);
        }
        assoc.extend(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| (i.to_string(), v)),
        );
        Ok(Value::EcmaArray(assoc))
    }

    /// `h` is the object header without its reference bit.
    fn object(&mut self, h: u32, depth: usize) -> Result<Value, AmfError> {
        let traits_idx = if h & 1 == 0 {
            // Trait reference.
            let idx = (h >> 1) as usize;
            if idx >= self.traits.len() {
                return Err(AmfError::BadReference);
            }
            let names: usize = self.traits[idx].sealed.iter().map(|s| 32 + s.len()).sum();
            self.charge(names)?;
            idx
        } else if h & 2 != 0 {
            // Externalizable: the body is class-defined, nothing generic can read or skip it.
            return Err(AmfError::UnknownMarker(OBJECT));
        } else {
            let dynamic = h & 4 != 0;
            let count = (h >> 3) as usize;
            if count > MAX_ELEMENTS {
                return Err(AmfError::TooLarge);
            }
            // Each sealed name takes at least one byte.
            if count > self.r.remaining() {
                return Err(AmfError::Truncated);
            }
            self.string()?; // class name: dropped, as for AMF0 typed objects
            let mut sealed = Vec::with_capacity(count);
            for _ in 0..count {
                sealed.push(self.string()?);
            }
            self.traits.push(Traits { dynamic, sealed });
            self.traits.len() - 1
        };
        let names = self.traits[traits_idx].sealed.clone();
        let dynamic = self.traits[traits_idx].dynamic;
        if names.len() > self.r.remaining() {
            return Err(AmfError::Truncated);
        }
        let mut props = Vec::with_capacity(names.len());
        for name in names {
            let v = self.value(depth + 1)?;
            props.push((name, v));
        }
        if dynamic {
            loop {
                let key = self.string()?;
                if key.is_empty() {
                    break;
                }
                if props.len() >= MAX_ELEMENTS {
                    return Err(AmfError::TooLarge);
                }
                let v = self.value(depth + 1)?;
                props.push((key, v));
            }
        }
        Ok(Value::Object(props))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u29(v: u32) -> Vec<u8> {
        let v = v & 0x1fff_ffff;
        if v < 0x80 {
            vec![v as u8]
        } else if v < 0x4000 {
            vec![(v >> 7) as u8 | 0x80, (v & 0x7f) as u8]
        } else if v < 0x20_0000 {
            vec![
                (v >> 14) as u8 | 0x80,
                ((v >> 7) & 0x7f) as u8 | 0x80,
                (v & 0x7f) as u8,
            ]
        } else {
            vec![
                (v >> 22) as u8 | 0x80,
                ((v >> 15) & 0x7f) as u8 | 0x80,
                ((v >> 8) & 0x7f) as u8 | 0x80,
                v as u8,
            ]
        }
    }

    fn s(text: &str) -> Vec<u8> {
        let mut b = u29(((text.len() as u32) << 1) | 1);
        b.extend_from_slice(text.as_bytes());
        b
    }

    fn one(b: &[u8]) -> Value {
        let (v, used) = decode(b).unwrap();
        assert_eq!(used, b.len());
        v
    }

    #[test]
    fn simple_types() {
        assert_eq!(one(&[UNDEFINED]), Value::Undefined);
        assert_eq!(one(&[NULL]), Value::Null);
        assert_eq!(one(&[FALSE]), Value::Boolean(false));
        assert_eq!(one(&[TRUE]), Value::Boolean(true));
        let mut d = vec![DOUBLE];
        d.extend_from_slice(&2.5f64.to_be_bytes());
        assert_eq!(one(&d), Value::Number(2.5));
        let mut date = vec![DATE, 0x01];
        date.extend_from_slice(&1000.0f64.to_be_bytes());
        assert_eq!(one(&date), Value::Date(1000.0, 0));
        let mut x = vec![XML];
        x.extend(s("<a/>"));
        assert_eq!(one(&x), Value::Xml("<a/>".into()));
        x[0] = XML_DOC;
        assert_eq!(one(&x), Value::Xml("<a/>".into()));
        let mut ba = vec![BYTE_ARRAY];
        ba.extend(s("\x01\x02\x03"));
        assert_eq!(one(&ba), Value::Undefined);
    }

    #[test]
    fn integers_every_width_and_sign() {
        for v in [
            0i32,
            1,
            127,
            128,
            16383,
            16384,
            0x1f_ffff,
            0x20_0000,
            0x0fff_ffff,
            -1,
            -268_435_456,
        ] {
            let mut b = vec![INTEGER];
            b.extend(u29(v as u32));
            assert_eq!(one(&b), Value::Number(v as f64), "{v}");
        }
    }

    #[test]
    fn string_references() {
        // ["ab", "", ref 0, "cd", ref 1] as a dense array.
        let mut b = vec![ARRAY];
        b.extend(u29((5 << 1) | 1));
        b.push(0x01); // no associative part
        b.push(STRING);
        b.extend(s("ab"));
        b.push(STRING);
        b.extend(s(""));
        b.extend_from_slice(&[STRING, 0x00]);
        b.push(STRING);
        b.extend(s("cd"));
        b.extend_from_slice(&[STRING, 0x02]);
        assert_eq!(
            one(&b),
            Value::StrictArray(["ab", "", "ab", "cd", "cd"].map(Value::string).to_vec())
        );
        assert_eq!(decode(&[STRING, 0x00]), Err(AmfError::BadReference));
    }

    #[test]
    fn arrays_dense_and_associative() {
        let mut b = vec![ARRAY];
        b.extend(u29((1 << 1) | 1));
        b.extend(s("k"));
        b.extend_from_slice(&[TRUE]);
        b.extend(s(""));
        b.extend_from_slice(&[INTEGER, 7]);
        assert_eq!(
            one(&b),
            Value::EcmaArray(vec![
                ("k".into(), Value::Boolean(true)),
                ("0".into(), Value::Number(7.0))
            ])
        );
    }

    #[test]
    fn objects_traits_and_references() {
        // [ obj{sealed a, dynamic b}, obj(trait ref 0), ref to object 1 ]
        let mut b = vec![ARRAY];
        b.extend(u29((3 << 1) | 1));
        b.push(0x01);
        b.push(OBJECT);
        b.extend(u29((1 << 4) | 0b1011)); // 1 sealed member, dynamic, inline traits, inline object
        b.extend(s("Cls"));
        b.extend(s("a"));
        b.extend_from_slice(&[INTEGER, 1]);
        b.extend(s("b"));
        b.extend_from_slice(&[INTEGER, 2]);
        b.extend(s(""));
        b.push(OBJECT);
        b.extend(u29(0b0001)); // trait reference 0, inline object
        b.extend_from_slice(&[INTEGER, 3]);
        b.extend(s("")); // dynamic members end
        b.push(OBJECT);
        b.extend(u29(1 << 1)); // object reference 1
        let o1 = Value::Object(vec![
            ("a".into(), Value::Number(1.0)),
            ("b".into(), Value::Number(2.0)),
        ]);
        assert_eq!(
            one(&b),
            Value::StrictArray(vec![
                o1.clone(),
                Value::Object(vec![("a".into(), Value::Number(3.0))]),
                o1
            ])
        );
        // A cycle: the array referencing itself.
        let cyc = [ARRAY, 0x03, 0x01, OBJECT, 0x00];
        assert_eq!(decode(&cyc), Err(AmfError::BadReference));
        // Externalizable traits.
        let mut ext = vec![OBJECT];
        ext.extend(u29(0b0111));
        ext.extend(s("flex.messaging.io.ArrayCollection"));
        assert_eq!(decode(&ext), Err(AmfError::UnknownMarker(OBJECT)));
        assert_eq!(decode(&[OBJECT, 0x01]), Err(AmfError::BadReference));
    }

    #[test]
    fn unsupported_markers() {
        for m in 0x0d..=0x11 {
            assert_eq!(decode(&[m, 0x01]), Err(AmfError::UnknownMarker(m)));
        }
    }

    #[test]
    fn caps() {
        let mut deep = Vec::new();
        for _ in 0..10_000 {
            deep.extend_from_slice(&[ARRAY, 0x03, 0x01]);
        }
        deep.push(NULL);
        assert_eq!(decode(&deep), Err(AmfError::TooDeep));
        let mut big = vec![ARRAY];
        big.extend(u29(0x1fff_ffff));
        big.push(0x01);
        assert_eq!(decode(&big), Err(AmfError::TooLarge));
        let mut long = vec![STRING];
        long.extend(u29(0x1fff_ffff));
        assert_eq!(decode(&long), Err(AmfError::Truncated));
        let mut sealed = vec![OBJECT];
        sealed.extend(u29((60_000 << 4) | 0b0011));
        sealed.extend(s(""));
        assert_eq!(decode(&sealed), Err(AmfError::Truncated));
        // A string of 60000 bytes referenced over and over exceeds the clone budget.
        let mut bomb = vec![ARRAY];
        bomb.extend(u29((60_000 << 1) | 1));
        bomb.push(0x01);
        bomb.push(STRING);
        bomb.extend(s(&"x".repeat(60_000)));
        for _ in 1..60_000 {
            bomb.extend_from_slice(&[STRING, 0x00]);
        }
        assert_eq!(decode(&bomb), Err(AmfError::TooLarge));
    }

    #[test]
    fn truncation_at_every_split_point() {
        let mut b = vec![ARRAY];
        b.extend(u29((2 << 1) | 1));
        b.extend(s("k"));
        b.push(DOUBLE);
        b.extend_from_slice(&1.0f64.to_be_bytes());
        b.extend(s(""));
        b.push(OBJECT);
        b.extend(u29(0b1011 | (1 << 4)));
        b.extend(s(""));
        b.extend(s("x"));
        b.push(STRING);
        b.extend(s("value"));
        b.extend(s(""));
        b.extend_from_slice(&[INTEGER, 0xff, 0xff, 0xff, 0xff]);
        assert!(decode(&b).is_ok());
        for cut in 0..b.len() {
            assert_eq!(decode(&b[..cut]), Err(AmfError::Truncated), "cut at {cut}");
        }
    }
}
